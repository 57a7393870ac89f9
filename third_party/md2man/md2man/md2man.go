// Package md2man stands in for github.com/cpuguy83/go-md2man/v2 (see the
// replace directive in berth's go.mod). urfave/cli links md2man, and with it
// blackfriday, whose package initialisation costs about 0.5 ms in every
// berth process, including each container's init. berth only renders the
// markdown urfave/cli's doc template produces (`berth man`), so this small
// converter handles exactly that dialect: title lines, # and ## headings,
// fenced code, paragraphs, list items, **bold** and backslash escapes.
package md2man

import (
	"bytes"
	"strings"
)

// Render converts doc to roff (man(7)).
func Render(doc []byte) []byte {
	var out bytes.Buffer
	inCode := false
	titleDone := false
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			if inCode {
				out.WriteString(".fi\n.RE\n")
			} else {
				out.WriteString(".PP\n.RS\n.nf\n")
			}
			inCode = !inCode
		case inCode:
			out.WriteString(escape(line) + "\n")
		case strings.HasPrefix(line, "% "):
			if !titleDone {
				titleDone = true
				name, section, desc := parseTitle(strings.TrimPrefix(line, "% "))
				out.WriteString(".TH \"" + escape(name) + "\" \"" + section + "\" \"\" \"\" \"" + escape(desc) + "\"\n")
			}
		case strings.HasPrefix(line, "## "):
			out.WriteString(".SS " + inline(strings.TrimPrefix(line, "## ")) + "\n")
		case strings.HasPrefix(line, "# "):
			out.WriteString(".SH " + strings.ToUpper(inline(strings.TrimPrefix(line, "# "))) + "\n")
		case strings.TrimSpace(line) == "":
			out.WriteString(".PP\n")
		case strings.HasPrefix(strings.TrimSpace(line), "- ") || strings.HasPrefix(strings.TrimSpace(line), "* "):
			out.WriteString(".IP \\(bu 2\n" + inline(strings.TrimSpace(line)[2:]) + "\n")
		default:
			out.WriteString(inline(line) + "\n")
		}
	}
	if inCode {
		out.WriteString(".fi\n.RE\n")
	}
	return out.Bytes()
}

// parseTitle splits "name(8) description".
func parseTitle(s string) (name, section, desc string) {
	head, desc, _ := strings.Cut(strings.TrimSpace(s), " ")
	name, section = head, "1"
	if i := strings.LastIndex(head, "("); i > 0 && strings.HasSuffix(head, ")") {
		name, section = head[:i], head[i+1:len(head)-1]
	}
	return name, section, strings.TrimSpace(desc)
}

// escape makes text safe for roff: backslashes, and a leading dot or apostrophe
// that would read as a request.
func escape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// inline handles markdown escapes (\< \> \* \_) and **bold** spans.
func inline(s string) string {
	var b strings.Builder
	bold := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && strings.IndexByte("<>*_`[]#\\", s[i+1]) >= 0:
			i++
			if s[i] == '\\' {
				b.WriteString(`\e`)
			} else {
				b.WriteByte(s[i])
			}
		case c == '*' && i+1 < len(s) && s[i+1] == '*':
			i++
			if bold {
				b.WriteString(`\fR`)
			} else {
				b.WriteString(`\fB`)
			}
			bold = !bold
		case c == '\\':
			b.WriteString(`\e`)
		default:
			b.WriteByte(c)
		}
	}
	if bold {
		b.WriteString(`\fR`)
	}
	out := b.String()
	if strings.HasPrefix(out, ".") || strings.HasPrefix(out, "'") {
		out = `\&` + out
	}
	return out
}
