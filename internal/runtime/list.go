package runtime

import (
	"errors"
	"fmt"
	"os"

	"berth/internal/state"
)

// State returns the public state of id.
func (r *Runtime) State(id string) (state.Public, error) {
	st, err := state.LoadView(r.Root, id)
	if err != nil {
		return state.Public{}, err
	}
	return st.Public(), nil
}

// Entry is one row of `list`: the public state plus the owner of its dir.
type Entry struct {
	state.Public
	OwnerUID int
}

// List returns every container under the root. A missing root lists nothing.
// A container whose state cannot be read is left out of the entries and
// reported in problems as runc reports it ("load container ID: ..."); one
// whose state dir is gone meanwhile (a concurrent delete) is not reported.
func (r *Runtime) List() (entries []Entry, problems []error, err error) {
	ids, err := state.List(r.Root)
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		st, err := state.LoadView(r.Root, id)
		if err != nil {
			if _, serr := os.Stat(state.Dir(r.Root, id)); errors.Is(serr, os.ErrNotExist) {
				continue
			}
			problems = append(problems, fmt.Errorf("load container %s: %w", id, err))
			continue
		}
		e := Entry{Public: st.Public()}
		if fi, err := os.Stat(st.Dir()); err == nil {
			e.OwnerUID = ownerOf(fi)
		}
		entries = append(entries, e)
	}
	return entries, problems, nil
}
