package fakegraph

import "net/http"

// mailboxControlRoutes mounts the mailboxes part of the loopback control API (Options.ControlAPI),
// documented in the package doc. A message or event the mailbox does not hold answers 404.
func (s *Server) mailboxControlRoutes() {
	m := s.mux
	m.HandleFunc("GET /_control/mailboxes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, append([]string{}, s.Mailboxes()...))
	})
	add := func(kind string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var in struct {
				ID     string         `json:"id"`
				Folder string         `json:"folder"`
				Props  map[string]any `json:"props"`
			}
			if !decodeControl(w, r, &in) {
				return
			}
			user := r.PathValue("user")
			if kind == "events" {
				writeJSON(w, http.StatusCreated, map[string]any{"id": s.AddEvent(user, MailItem{ID: in.ID, Props: in.Props})})
				return
			}
			if in.Folder != "" {
				if _, ok := folderByRef(user, in.Folder); !ok {
					http.Error(w, "no such folder", http.StatusBadRequest)
					return
				}
			}
			writeJSON(w, http.StatusCreated, map[string]any{"id": s.AddMessage(user, MailItem{ID: in.ID, Folder: in.Folder, Props: in.Props})})
		}
	}
	update := func(op func(user, id string, props map[string]any) bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var props map[string]any
			if !decodeControl(w, r, &props) {
				return
			}
			controlResult(w, op(r.PathValue("user"), r.PathValue("item"), props), "no such item")
		}
	}
	del := func(op func(user, id string) bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			controlResult(w, op(r.PathValue("user"), r.PathValue("item")), "no such item")
		}
	}
	m.HandleFunc("POST /_control/mailboxes/{user}/messages", add("messages"))
	m.HandleFunc("POST /_control/mailboxes/{user}/messages/{item}", update(s.UpdateMessage))
	m.HandleFunc("DELETE /_control/mailboxes/{user}/messages/{item}", del(s.DeleteMessage))
	m.HandleFunc("POST /_control/mailboxes/{user}/messages/{item}/move", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Folder string `json:"folder"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		if _, ok := folderByRef(r.PathValue("user"), in.Folder); !ok {
			http.Error(w, "no such folder", http.StatusBadRequest)
			return
		}
		id := s.MoveMessage(r.PathValue("user"), r.PathValue("item"), in.Folder)
		if id == "" {
			http.Error(w, "no such message, or already in that folder", http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": id})
	})
	m.HandleFunc("POST /_control/mailboxes/{user}/events", add("events"))
	m.HandleFunc("POST /_control/mailboxes/{user}/events/{item}", update(s.UpdateEvent))
	m.HandleFunc("DELETE /_control/mailboxes/{user}/events/{item}", del(s.DeleteEvent))
	m.HandleFunc("POST /_control/mailboxes/{user}/policy", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			OverQuota    *bool `json:"overQuota"`
			AccessDenied *bool `json:"accessDenied"`
			Dropping     *bool `json:"dropping"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		user := r.PathValue("user")
		s.AddMailbox(user)
		if in.OverQuota != nil {
			s.SetMailboxOverQuota(user, *in.OverQuota)
		}
		if in.AccessDenied != nil {
			s.SetMailboxAccessDenied(user, *in.AccessDenied)
		}
		if in.Dropping != nil {
			s.SetMailboxDropping(user, *in.Dropping)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_control/mail-duplicates", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			N int `json:"n"`
		}
		if !decodeControl(w, r, &in) {
			return
		}
		s.SetMailDuplicates(in.N)
		w.WriteHeader(http.StatusNoContent)
	})
}
