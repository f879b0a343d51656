package fakegraph

import (
	"errors"
	"net/http"
)

// teamsControlRoutes mounts the Teams control API (Options.ControlAPI; see the package doc). Channel and
// chat ids (19:…@thread…) travel in the JSON body, not in the path.
func (s *Server) teamsControlRoutes() {
	m := s.mux
	m.HandleFunc("POST /_control/teams/messages", func(w http.ResponseWriter, r *http.Request) {
		var in ChatMessage
		if !decodeControl(w, r, &in) {
			return
		}
		out, err := s.PostTeamsMessage(in)
		if teamsControlError(w, err) {
			return
		}
		writeJSON(w, http.StatusCreated, out)
	})
	m.HandleFunc("GET /_control/teams/messages", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.TeamsMessages())
	})
	m.HandleFunc("POST /_control/teams/messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		var in ChatMessage
		if !decodeControl(w, r, &in) {
			return
		}
		in.ID = r.PathValue("id")
		if !teamsControlError(w, s.EditTeamsMessage(in)) {
			w.WriteHeader(http.StatusNoContent)
		}
	})
	m.HandleFunc("POST /_control/teams/messages/{id}/delete", func(w http.ResponseWriter, r *http.Request) {
		var in ChatMessage
		if !decodeControl(w, r, &in) {
			return
		}
		in.ID = r.PathValue("id")
		if !teamsControlError(w, s.DeleteTeamsMessage(in)) {
			w.WriteHeader(http.StatusNoContent)
		}
	})
	m.HandleFunc("POST /_control/teams/tamper", func(w http.ResponseWriter, r *http.Request) {
		var in TeamsTamper
		if !decodeControl(w, r, &in) {
			return
		}
		s.TamperTeams(in)
		w.WriteHeader(http.StatusNoContent)
	})
}

// teamsControlError answers an error of the Teams Go API: 404 for a missing message, 400 else.
func teamsControlError(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrChatMessageNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	default:
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
	return true
}
