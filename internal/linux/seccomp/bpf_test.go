package seccomp

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestTrampolinesPastSpareCapacity: more far conditional jumps than the
// node table's spare room, so a trampoline's append moves the table while
// a jump is being retargeted. Every conditional gets exactly one
// trampoline (none lost and redone), and every path still ends where it
// was sent.
func TestTrampolinesPastSpareCapacity(t *testing.T) {
	const conds, filler = 200, 300
	var a assembler
	far := a.newLabel()
	a.load(offNr)
	for i := 0; i < conds; i++ {
		a.jcond(opJeqK, uint32(i), far, next)
	}
	for i := 0; i < filler; i++ {
		a.and(0xffffffff)
	}
	a.ret(unix.SECCOMP_RET_ALLOW)
	a.bind(far)
	a.ret(unix.SECCOMP_RET_KILL_PROCESS)
	prog, err := a.assemble()
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + conds + filler + 2 + conds; len(prog) != want {
		t.Errorf("%d instructions, want %d (one trampoline per far jump)", len(prog), want)
	}
	for _, nr := range []int{0, 63, 64, 65, 199} {
		if got, err := run(prog, seccompData{nr: uint32(nr)}.bytes(false), false); err != nil || got != unix.SECCOMP_RET_KILL_PROCESS {
			t.Errorf("nr %d: %#x, %v; want the far target", nr, got, err)
		}
	}
	if got, err := run(prog, seccompData{nr: conds}.bytes(false), false); err != nil || got != unix.SECCOMP_RET_ALLOW {
		t.Errorf("nr %d: %#x, %v; want the fall-through", conds, got, err)
	}
}
