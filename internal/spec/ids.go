package spec

import "os"

func callerUID() int { return os.Getuid() }
func callerGID() int { return os.Getgid() }
