package runtime

import (
	"errors"
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
func (r *Runtime) List() ([]Entry, error) {
	ids, err := state.List(r.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, err
	}
	var out []Entry
	for _, id := range ids {
		st, err := state.LoadView(r.Root, id)
		if err != nil {
			continue // half-created or being deleted
		}
		e := Entry{Public: st.Public()}
		if fi, err := os.Stat(st.Dir()); err == nil {
			e.OwnerUID = ownerOf(fi)
		}
		out = append(out, e)
	}
	return out, nil
}
