package fakegraph

import (
	"errors"
	"net/http"
	"time"
)

// driveControlRoutes mounts the drives' control API (Options.ControlAPI; see the package doc), so the
// demo and the benchmarks drive the double over HTTP as the Go API does in tests.
func (s *Server) driveControlRoutes() {
	m := s.mux
	m.HandleFunc("POST /_control/drives", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			ID        string `json:"id"`
			DriveType string `json:"driveType"`
			Name      string `json:"name"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		id, err := s.AddDrive(Drive{ID: in.ID, DriveType: in.DriveType, Name: in.Name})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"id": id, "rootId": s.DriveRootID(id)})
	})
	m.HandleFunc("GET /_control/drives", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Drives())
	})
	m.HandleFunc("GET /_control/drives/{drive}/items", func(w http.ResponseWriter, r *http.Request) {
		items, err := s.DriveItems(r.PathValue("drive"))
		if driveControlError(w, err) {
			return
		}
		writeJSON(w, http.StatusOK, items)
	})
	m.HandleFunc("POST /_control/drives/{drive}/items", func(w http.ResponseWriter, r *http.Request) {
		var in DriveItem
		if !decodeControl(w, r, &in) {
			return
		}
		id, err := s.AddDriveItem(r.PathValue("drive"), in)
		if driveControlError(w, err) {
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"id": id})
	})
	m.HandleFunc("POST /_control/drives/{drive}/items/{item}", func(w http.ResponseWriter, r *http.Request) {
		in := struct {
			Size *int64 `json:"size"`
		}{}
		if !decodeControl(w, r, &in) {
			return
		}
		size := int64(-1)
		if in.Size != nil {
			size = *in.Size
		}
		driveControlDone(w, s.EditDriveFiles(r.PathValue("drive"), []string{r.PathValue("item")}, size, 1))
	})
	m.HandleFunc("POST /_control/drives/{drive}/items/{item}/rename", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name string `json:"name"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		driveControlDone(w, s.RenameDriveItem(r.PathValue("drive"), r.PathValue("item"), in.Name))
	})
	m.HandleFunc("POST /_control/drives/{drive}/items/{item}/move", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			ParentID string `json:"parentId"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		driveControlDone(w, s.MoveDriveItem(r.PathValue("drive"), r.PathValue("item"), in.ParentID))
	})
	m.HandleFunc("POST /_control/drives/{drive}/items/{item}/delete", func(w http.ResponseWriter, r *http.Request) {
		driveControlDone(w, s.DeleteDriveItem(r.PathValue("drive"), r.PathValue("item")))
	})
	m.HandleFunc("POST /_control/drives/{drive}/seed", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			N        int    `json:"n"`
			ParentID string `json:"parentId"`
			Prefix   string `json:"prefix"`
			Notify   bool   `json:"notify"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		if in.N < 1 || in.N > 100000 {
			http.Error(w, "n must be 1..100000", http.StatusBadRequest)
			return
		}
		ids, err := s.SeedDriveFiles(r.PathValue("drive"), in.ParentID, in.Prefix, in.N, in.Notify)
		if driveControlError(w, err) {
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"ids": ids})
	})
	m.HandleFunc("POST /_control/drives/{drive}/edit", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			IDs  []string `json:"ids"`
			Taps *int     `json:"taps"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		taps := 1
		if in.Taps != nil {
			taps = *in.Taps
		}
		if taps < 0 || taps > 1000 {
			http.Error(w, "taps must be 0..1000", http.StatusBadRequest)
			return
		}
		driveControlDone(w, s.EditDriveFiles(r.PathValue("drive"), in.IDs, -1, taps))
	})
	m.HandleFunc("POST /_control/drives/{drive}/tap", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			N int `json:"n"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		if in.N < 1 || in.N > 100000 {
			http.Error(w, "n must be 1..100000", http.StatusBadRequest)
			return
		}
		driveControlDone(w, s.TapDrive(r.PathValue("drive"), in.N))
	})
	m.HandleFunc("POST /_control/drives/{drive}/expire-tokens", func(w http.ResponseWriter, r *http.Request) {
		driveControlDone(w, s.ExpireDriveDeltaTokens(r.PathValue("drive")))
	})
	m.HandleFunc("POST /_control/drives-lag", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Seconds float64 `json:"seconds"`
			Calls   int     `json:"calls"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		if in.Seconds < 0 || in.Calls < 0 {
			http.Error(w, "seconds and calls must not be negative", http.StatusBadRequest)
			return
		}
		s.SetDriveDeltaLag(time.Duration(in.Seconds*float64(time.Second)), in.Calls)
		w.WriteHeader(http.StatusNoContent)
	})
}

// driveControlError answers an error of the drive Go API: 404 for a missing drive or item, 400 else.
func driveControlError(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrDriveNotFound), errors.Is(err, ErrDriveItemNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, errDriveConflict):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
	return true
}

func driveControlDone(w http.ResponseWriter, err error) {
	if !driveControlError(w, err) {
		w.WriteHeader(http.StatusNoContent)
	}
}
