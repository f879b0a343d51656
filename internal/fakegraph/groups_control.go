package fakegraph

import "net/http"

// groupControlRoutes mounts the groups part of the loopback control API (Options.ControlAPI),
// documented in the package doc. A missing (or, where it matters, soft-deleted) group answers 404.
func (s *Server) groupControlRoutes() {
	m := s.mux
	m.HandleFunc("POST /_control/groups", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			ID      string         `json:"id"`
			Props   map[string]any `json:"props"`
			Members []string       `json:"members"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		id := s.AddGroup(Group{ID: in.ID, Props: in.Props, Members: in.Members})
		writeJSON(w, http.StatusCreated, map[string]any{"id": id})
	})
	m.HandleFunc("POST /_control/groups/{id}", func(w http.ResponseWriter, r *http.Request) {
		var props map[string]any
		if !decodeControl(w, r, &props) {
			return
		}
		controlResult(w, s.UpdateGroup(r.PathValue("id"), props), "no such active group")
	})
	m.HandleFunc("POST /_control/groups/{id}/members", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Add    []string `json:"add"`
			Remove []string `json:"remove"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		id := r.PathValue("id")
		if _, ok := s.Group(id); !ok {
			controlResult(w, false, "no such active group")
			return
		}
		ok := true
		if len(in.Add) > 0 {
			ok = s.AddMembers(id, in.Add...)
		}
		if ok && len(in.Remove) > 0 {
			ok = s.RemoveMembers(id, in.Remove...)
		}
		controlResult(w, ok, "no such active group")
	})
	groupOp := func(op func(string) bool, missing string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			controlResult(w, op(r.PathValue("id")), missing)
		}
	}
	m.HandleFunc("POST /_control/groups/{id}/softdelete", groupOp(s.SoftDeleteGroup, "no such active group"))
	m.HandleFunc("POST /_control/groups/{id}/restore", groupOp(s.RestoreGroup, "no such soft-deleted group"))
	m.HandleFunc("POST /_control/groups/{id}/delete", groupOp(s.PermanentlyDeleteGroup, "no such group"))
	m.HandleFunc("GET /_control/groups", func(w http.ResponseWriter, r *http.Request) {
		out := []map[string]any{}
		for _, g := range s.Groups() {
			p := g.Props
			p["members"] = g.Members
			out = append(out, p)
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func controlResult(w http.ResponseWriter, ok bool, missing string) {
	if !ok {
		http.Error(w, missing, http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
