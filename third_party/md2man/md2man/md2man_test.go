package md2man

import (
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	md := "% berth-kill(8) \n\n% \n\n# NAME\n\nberth-kill - kill it\n\n# DESCRIPTION\n\nberth kill \\<container-id\\> **now**\n.dotted line\n\n```\n[--all|-a] \\x\n```\n\n- item one\n## sub\n"
	got := string(Render([]byte(md)))
	for _, want := range []string{
		".TH \"berth-kill\" \"8\"", ".SH NAME\n", "berth kill <container-id> \\fBnow\\fR\n", "\\&.dotted line\n",
		".nf\n[--all|-a] \\ex\n.fi\n", ".IP \\(bu 2\nitem one\n", ".SS sub\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("render lacks %q:\n%s", want, got)
		}
	}
}
