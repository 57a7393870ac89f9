package state

import "testing"

func TestStatusPredicates(t *testing.T) {
	type row struct{ alive, start, kill, pause, resume, exec, execIgnorePaused, del bool }
	want := map[Status]row{
		Creating: {},
		Created:  {alive: true, start: true, kill: true, pause: true, exec: true, execIgnorePaused: true, del: true},
		Running:  {alive: true, kill: true, pause: true, exec: true, execIgnorePaused: true},
		Paused:   {alive: true, kill: true, resume: true, execIgnorePaused: true},
		Stopped:  {del: true},
	}
	for st, w := range want {
		got := row{st.Alive(), st.CanStart(), st.CanKill(), st.CanPause(), st.CanResume(), st.CanExec(false), st.CanExec(true), st.CanDelete()}
		if got != w {
			t.Errorf("%s: got %+v, want %+v", st, got, w)
		}
	}
}
