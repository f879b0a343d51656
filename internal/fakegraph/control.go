package fakegraph

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// controlRoutes mounts the loopback control API (Options.ControlAPI), documented in the package doc.
// It needs no token: the double listens on loopback only.
func (s *Server) controlRoutes() {
	m := s.mux
	m.HandleFunc("POST /_control/users", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			ID    string         `json:"id"`
			Props map[string]any `json:"props"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		if in.ID == "" {
			in.ID = newGUID()
		}
		s.AddUser(User{ID: in.ID, Props: in.Props})
		writeJSON(w, http.StatusCreated, map[string]any{"id": in.ID})
	})
	m.HandleFunc("POST /_control/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		var props map[string]any
		if !decodeControl(w, r, &props) {
			return
		}
		if _, ok := s.User(r.PathValue("id")); !ok {
			http.Error(w, "no such active user", http.StatusNotFound)
			return
		}
		s.UpdateUser(r.PathValue("id"), props)
		w.WriteHeader(http.StatusNoContent)
	})
	// A user operation on an id the directory does not hold answers 404, so that a typo in a hand-typed
	// command is seen rather than silently doing nothing.
	active := func(id string) bool { _, ok := s.User(id); return ok }
	anywhere := func(id string) bool { return active(id) || s.SoftDeleted(id) }
	userOp := func(exists func(string) bool, notFound string, op func(string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if !exists(id) {
				http.Error(w, notFound, http.StatusNotFound)
				return
			}
			op(id)
			w.WriteHeader(http.StatusNoContent)
		}
	}
	m.HandleFunc("POST /_control/users/{id}/softdelete", userOp(active, "no such active user", s.SoftDeleteUser))
	m.HandleFunc("POST /_control/users/{id}/restore", userOp(s.SoftDeleted, "no such soft-deleted user", s.RestoreUser))
	m.HandleFunc("POST /_control/users/{id}/delete", userOp(anywhere, "no such user, active or soft-deleted", s.PermanentlyDeleteUser))
	m.HandleFunc("DELETE /_control/users/{id}", userOp(anywhere, "no such user, active or soft-deleted", s.PermanentlyDeleteUser))
	m.HandleFunc("GET /_control/users", func(w http.ResponseWriter, r *http.Request) {
		var out []map[string]any
		for _, u := range s.Users() {
			out = append(out, u.Props)
		}
		writeJSON(w, http.StatusOK, out)
	})
	m.HandleFunc("POST /_control/fault", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Route      string  `json:"route"`
			Status     int     `json:"status"`
			RetryAfter float64 `json:"retryAfterSeconds"`
			Hang       float64 `json:"hangSeconds"`
			Count      int     `json:"count"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		if in.Route == "" {
			http.Error(w, "route is required", http.StatusBadRequest)
			return
		}
		s.Inject(in.Route, Fault{Status: in.Status, RetryAfter: seconds(in.RetryAfter), Hang: seconds(in.Hang), Count: in.Count})
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_control/throttle-batch", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			N          int     `json:"n"`
			RetryAfter float64 `json:"retryAfterSeconds"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		s.ThrottleBatchItems(in.N, seconds(in.RetryAfter))
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_control/drop-notifications", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			On bool `json:"on"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		s.DropNotifications(in.On)
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_control/clear-faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_control/flush", func(w http.ResponseWriter, r *http.Request) {
		s.Flush()
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("GET /_control/subscriptions", func(w http.ResponseWriter, r *http.Request) {
		subs := s.Subscriptions()
		out := []any{}
		for i := range subs {
			out = append(out, s.subJSON(&subs[i], true))
		}
		writeJSON(w, http.StatusOK, out)
	})
	m.HandleFunc("POST /_control/subscriptions/{id}/lifecycle", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Event string `json:"event"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		s.SendLifecycle(r.PathValue("id"), in.Event)
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_control/subscriptions/{id}/expire", func(w http.ResponseWriter, r *http.Request) {
		s.ExpireSubscription(r.PathValue("id"))
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("GET /_control/requests", func(w http.ResponseWriter, r *http.Request) {
		out := []any{}
		for _, q := range s.Requests() {
			out = append(out, map[string]any{"method": q.Method, "path": q.Path, "query": q.RawQuery, "status": q.Status, "inBatch": q.InBatch, "time": q.Time})
		}
		writeJSON(w, http.StatusOK, out)
	})
	m.HandleFunc("GET /_control/deliveries", func(w http.ResponseWriter, r *http.Request) {
		out := []any{}
		for _, d := range s.Deliveries() {
			out = append(out, map[string]any{"kind": d.Kind, "url": d.URL, "attempt": d.Attempt, "status": d.Status,
				"notifications": d.Notifications, "outcome": d.Outcome, "err": d.Err, "durationMs": d.Duration.Milliseconds(), "time": d.Time})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func decodeControl(w http.ResponseWriter, r *http.Request, v any) bool {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if len(b) == 0 {
		return true
	}
	if err := json.Unmarshal(b, v); err != nil {
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}
