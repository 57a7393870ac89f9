package spec

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary config.json documents to the loader and
// validator: they must return an error or a spec that validates again, and
// never panic.
func FuzzParse(f *testing.F) {
	def, _ := json.Marshal(Default(false))
	f.Add(def)
	rl, _ := json.Marshal(Default(true))
	f.Add(rl)
	f.Add([]byte(`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"linux":{"namespaces":[{"type":"user"}]}}`))
	f.Add([]byte(`{"root":{"path":"/"},"process":{"args":[""],"cwd":"rel"},"linux":{"namespaces":[{"type":"pid","path":"x"},{"type":"pid"}]}}`))
	f.Add([]byte(`{"mounts":[{"destination":""}],"linux":{"rootfsPropagation":"bogus"}}`))
	bundle := f.TempDir()
	os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(bytes.NewReader(data), bundle)
		if err != nil {
			return
		}
		if err := Validate(s, bundle); err != nil {
			t.Fatalf("Parse accepted a spec that Validate rejects: %v", err)
		}
	})
}
