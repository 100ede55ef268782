package hierarchyhttp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// wireTask is a task on the wire: its settings stay raw JSON until the
// receiving Node decodes them into its registered type.
type wireTask struct {
	task.Task
	Settings json.RawMessage `json:"settings"`
}

// wireTaskSet is hierarchy.TaskSet on the wire.
type wireTaskSet struct {
	From    string            `json:"from"`
	To      string            `json:"to"`
	Version hierarchy.Version `json:"version"`
	Path    []string          `json:"path,omitempty"`
	Tasks   []wireTask        `json:"tasks"`
}

func encodeTaskSet(m hierarchy.TaskSet) ([]byte, error) {
	w := wireTaskSet{From: m.From, To: m.To, Version: m.Version, Path: m.Path, Tasks: make([]wireTask, len(m.Tasks))}
	for i, t := range m.Tasks {
		raw := json.RawMessage("null")
		if t.Settings != nil {
			b, err := json.Marshal(t.Settings)
			if err != nil {
				return nil, fmt.Errorf("hierarchyhttp: encode settings of task %q: %w", t.ID, err)
			}
			raw = b
		}
		t.Settings = nil
		w.Tasks[i] = wireTask{Task: t, Settings: raw}
	}
	return json.Marshal(w)
}

// decodeTaskSet reads a task set: the body is bounded by the caller,
// unknown fields are refused, each task's settings come as
// json.RawMessage.
func decodeTaskSet(b []byte) (hierarchy.TaskSet, error) {
	var w wireTaskSet
	if err := strictDecode(b, &w); err != nil {
		return hierarchy.TaskSet{}, err
	}
	if len(w.Tasks) > MaxTasks {
		return hierarchy.TaskSet{}, errs.Invalid("tasks", fmt.Sprint(len(w.Tasks)), fmt.Sprintf("must hold at most %d tasks", MaxTasks))
	}
	m := hierarchy.TaskSet{From: w.From, To: w.To, Version: w.Version, Path: w.Path, Tasks: make([]task.Task, len(w.Tasks))}
	for i, t := range w.Tasks {
		m.Tasks[i] = t.Task
		if len(t.Settings) > 0 && !bytes.Equal(t.Settings, []byte("null")) {
			m.Tasks[i].Settings = t.Settings
		}
	}
	return m, nil
}

// wireReport is hierarchy.Report on the wire.
type wireReport struct {
	From       string                     `json:"from"`
	To         string                     `json:"to"`
	Version    hierarchy.Version          `json:"version"`
	Complete   bool                       `json:"complete"`
	Statistics []hierarchy.TaskStatistics `json:"statistics"`
}

func decodeReport(b []byte) (hierarchy.Report, error) {
	var w wireReport
	if err := strictDecode(b, &w); err != nil {
		return hierarchy.Report{}, err
	}
	if len(w.Statistics) > MaxFigures {
		return hierarchy.Report{}, errs.Invalid("statistics", fmt.Sprint(len(w.Statistics)), fmt.Sprintf("must hold at most %d figures", MaxFigures))
	}
	return hierarchy.Report{From: w.From, To: w.To, Version: w.Version, Complete: w.Complete, Statistics: w.Statistics}, nil
}

// wireQuery is a results query queued for a child, with its id.
type wireQuery struct {
	ID    uint64                 `json:"id"`
	Query hierarchy.ResultsQuery `json:"query"`
}

// wireAnswer is a child's answer to a query.
type wireAnswer struct {
	ID   uint64                 `json:"id"`
	Page *hierarchy.ResultsPage `json:"page,omitempty"`
	// Error is set when the child could not answer: Kind is one of
	// "invalid", "not_found", "unavailable"; Message says why (no
	// secrets: it is the child's error text).
	Error *wireError `json:"error,omitempty"`
}

type wireError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func decodeAnswer(b []byte) (wireAnswer, error) {
	var a wireAnswer
	if err := strictDecode(b, &a); err != nil {
		return wireAnswer{}, err
	}
	if a.Page != nil && len(a.Page.Results) > MaxPageResults {
		return wireAnswer{}, errs.Invalid("page.results", fmt.Sprint(len(a.Page.Results)), fmt.Sprintf("must hold at most %d results", MaxPageResults))
	}
	if a.Error != nil && len(a.Error.Message) > 4096 {
		a.Error.Message = a.Error.Message[:4096]
	}
	return a, nil
}

func decodeQueries(b []byte) ([]wireQuery, error) {
	var qs []wireQuery
	if err := strictDecode(b, &qs); err != nil {
		return nil, err
	}
	return qs, nil
}

// strictDecode decodes one JSON value, refusing unknown fields and
// trailing data, as an ErrInvalid error.
func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errs.Invalid("body", "", "is not a valid message: "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return errs.Invalid("body", "", "has data after the message")
	}
	return nil
}
