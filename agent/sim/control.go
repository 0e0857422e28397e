package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Controller is what the control API drives; *Sim is one.
type Controller interface {
	Injector
	Faults() []ActiveFault
}

// ControlHandler serves the fault control API:
//
//	POST /faults  {"device":"<id>","fault":"offline"}
//	              {"agent":"<id>","fault":"disconnect","for":"20s"}
//	GET  /faults  the active faults and the catalogue of supported ones
//
// Bad requests get 400, unknown devices and agents 404, each with a JSON
// {"error": "..."} body saying what is wrong.
func ControlHandler(c Controller) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		f, err := decodeFault(w, r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
			return
		}
		if err := c.Fault(f); err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, ErrUnknownDevice) || errors.Is(err, ErrUnknownAgent) {
				status = http.StatusNotFound
			}
			writeJSON(w, status, errorBody{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Active []ActiveFault `json:"active"`
		}{c.Faults()})
	})
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Active    []ActiveFault `json:"active"`
			Catalogue []FaultSpec   `json:"catalogue"`
		}{c.Faults(), Catalogue()})
	})
	return mux
}

// maxControlBody bounds a fault request; real ones are under 100 bytes.
const maxControlBody = 4 << 10

func decodeFault(w http.ResponseWriter, r *http.Request) (Fault, error) {
	var req struct {
		Device string `json:"device"`
		Agent  string `json:"agent"`
		Fault  string `json:"fault"`
		For    string `json:"for"` // a Go duration, e.g. "20s"
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	// A misspelt field would otherwise be silently ignored.
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Fault{}, fmt.Errorf("bad JSON: %v", err)
	}
	if dec.More() {
		return Fault{}, errors.New("bad JSON: trailing data after the object")
	}
	if req.Fault == "" {
		return Fault{}, errors.New(`"fault" is missing`)
	}
	f := Fault{Device: req.Device, Agent: req.Agent, Fault: req.Fault}
	if req.For != "" {
		d, err := time.ParseDuration(req.For)
		if err != nil {
			return Fault{}, fmt.Errorf(`"for": %v`, err)
		}
		f.For = d
	}
	return f, nil
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
