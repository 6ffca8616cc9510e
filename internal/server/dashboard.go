package server

import "net/http"

// dashboardRoutes adds the web dashboard's pages to mux.
func (s *Server) dashboardRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if err := s.signIn(w, r); err != nil {
			s.fail(w, r, err)
		}
	})
}
