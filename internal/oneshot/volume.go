package oneshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"berth/internal/atomicfile"
	"berth/internal/state"
)

// DefaultVolumeDir holds one directory per volume: _data (what containers
// mount) and volume.json.
const DefaultVolumeDir = "/var/lib/berth/volumes"

// EnvVolumeDir overrides DefaultVolumeDir.
const EnvVolumeDir = "BERTH_VOLUMES"

// VolumeDir returns $BERTH_VOLUMES or DefaultVolumeDir.
func VolumeDir() string {
	if d := os.Getenv(EnvVolumeDir); d != "" {
		return d
	}
	return DefaultVolumeDir
}

// ErrNoSuchVolume is returned for a volume name that does not exist.
var ErrNoSuchVolume = errors.New("no such volume")

// Volume is one named (or anonymous) volume.
type Volume struct {
	Name      string            `json:"name"`
	Created   time.Time         `json:"created"`
	Anonymous bool              `json:"anonymous,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// NeedsCopyUp: the first container that mounts the volume copies the
	// image's content at the mount point into it (docker's and podman's
	// rule for a new volume), then this is cleared.
	NeedsCopyUp bool   `json:"needsCopyUp,omitempty"`
	Mountpoint  string `json:"mountpoint"`
}

func volumePaths(dir, name string) (vdir, data, meta string) {
	vdir = filepath.Join(dir, name)
	return vdir, filepath.Join(vdir, "_data"), filepath.Join(vdir, "volume.json")
}

// ValidVolumeName reports whether name can be a volume name (docker's
// alphabet: [a-zA-Z0-9][a-zA-Z0-9_.-]*).
func ValidVolumeName(name string) error {
	if state.ValidateID(name) != nil || len(name) > 128 || name[0] == '.' || name[0] == '_' || name[0] == '-' {
		return fmt.Errorf("volume name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	return nil
}

// CreateVolume makes a new volume; exclusive fails if it exists, otherwise an
// existing volume is returned as it is (created false).
func CreateVolume(dir, name string, anonymous bool, labels map[string]string, exclusive bool) (_ *Volume, created bool, retErr error) {
	if err := ValidVolumeName(name); err != nil {
		return nil, false, err
	}
	vdir, data, meta := volumePaths(dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	if err := os.Mkdir(vdir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			if exclusive {
				return nil, false, fmt.Errorf("volume %s already exists", name)
			}
			v, err := LoadVolume(dir, name)
			return v, false, err
		}
		return nil, false, err
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(vdir)
		}
	}()
	if err := os.Mkdir(data, 0o755); err != nil {
		return nil, false, err
	}
	v := &Volume{Name: name, Created: time.Now().UTC(), Anonymous: anonymous, Labels: labels, NeedsCopyUp: true, Mountpoint: data}
	return v, true, writeVolume(meta, v)
}

func writeVolume(meta string, v *Volume) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(meta, b, 0o600)
}

// LoadVolume reads a volume's record.
func LoadVolume(dir, name string) (*Volume, error) {
	if err := ValidVolumeName(name); err != nil {
		return nil, err
	}
	_, data, meta := volumePaths(dir, name)
	b, err := os.ReadFile(meta)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNoSuchVolume, name)
		}
		return nil, err
	}
	var v Volume
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", meta, err)
	}
	v.Mountpoint = data
	return &v, nil
}

// ListVolumes returns every volume, by name.
func ListVolumes(dir string) ([]*Volume, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []*Volume
	for _, e := range ents {
		if v, err := LoadVolume(dir, e.Name()); err == nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// VolumeUsers returns the names of the containers under home that mount
// volume name.
func VolumeUsers(home, dir, name string) ([]string, error) {
	list, err := List(home)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, c := range list {
		for _, v := range c.Meta.Volumes {
			if v.Name == name && sameDir(c.Meta.VolumeDir, dir) {
				users = append(users, c.Meta.Name)
			}
		}
	}
	return users, nil
}

func sameDir(a, b string) bool {
	if a == "" {
		a = DefaultVolumeDir
	}
	return filepath.Clean(a) == filepath.Clean(b)
}

// RemoveVolume deletes a volume and its data; a volume a container (under
// home) still mounts is refused.
func RemoveVolume(home, dir, name string) error {
	if _, err := LoadVolume(dir, name); err != nil {
		return err
	}
	users, err := VolumeUsers(home, dir, name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("volume %s is in use by container %v: remove the container first", name, users)
	}
	vdir, _, _ := volumePaths(dir, name)
	return os.RemoveAll(vdir)
}

// copyUp fills a new volume with what the image has at dest (resolved in
// the rootfs), owner and mode of the mount point included, once.
func copyUp(dir string, vm VolumeMount, rootfs string) error {
	v, err := LoadVolume(dir, vm.Name)
	if err != nil {
		return err
	}
	if !v.NeedsCopyUp {
		return nil
	}
	empty, err := dirEmpty(v.Mountpoint)
	if err != nil {
		return err
	}
	if empty {
		if err := copyInto(rootfs, vm.Destination, v.Mountpoint); err != nil {
			return fmt.Errorf("volume %s: copying the image's %s: %w", vm.Name, vm.Destination, err)
		}
	}
	v.NeedsCopyUp = false
	_, _, meta := volumePaths(dir, vm.Name)
	return writeVolume(meta, v)
}

func dirEmpty(d string) (bool, error) {
	f, err := os.Open(d)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}
