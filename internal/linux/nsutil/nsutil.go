// Package nsutil names namespace types and orders their joins.
package nsutil

import (
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Type is an OCI namespace type ("pid", "network", ...).
type Type specs.LinuxNamespaceType

// Namespace is one namespace to join.
type Namespace struct {
	Type Type
	Path string
}

var flags = map[Type]uintptr{
	Type(specs.PIDNamespace):     unix.CLONE_NEWPID,
	Type(specs.NetworkNamespace): unix.CLONE_NEWNET,
	Type(specs.MountNamespace):   unix.CLONE_NEWNS,
	Type(specs.IPCNamespace):     unix.CLONE_NEWIPC,
	Type(specs.UTSNamespace):     unix.CLONE_NEWUTS,
	Type(specs.UserNamespace):    unix.CLONE_NEWUSER,
	Type(specs.CgroupNamespace):  unix.CLONE_NEWCGROUP,
	Type(specs.TimeNamespace):    unix.CLONE_NEWTIME,
}

// procNames are the /proc/PID/ns/ entry names.
var procNames = map[Type]string{
	Type(specs.PIDNamespace): "pid", Type(specs.NetworkNamespace): "net", Type(specs.MountNamespace): "mnt",
	Type(specs.IPCNamespace): "ipc", Type(specs.UTSNamespace): "uts", Type(specs.UserNamespace): "user",
	Type(specs.CgroupNamespace): "cgroup", Type(specs.TimeNamespace): "time",
}

// Valid reports whether t is a namespace type berth knows.
func (t Type) Valid() bool { _, ok := flags[t]; return ok }

// CloneFlag is the CLONE_NEW* flag of t.
func (t Type) CloneFlag() uintptr { return flags[t] }

// ProcName is t's entry in /proc/PID/ns.
func (t Type) ProcName() string { return procNames[t] }

// JoinedByConstructor reports whether the child joins t itself, before its
// runtime starts: user and mnt need a single-threaded process, time switches
// the caller itself, and cgroup is kept out of the parent so clone3 can place
// the child into a v2 cgroup from the parent's own cgroup namespace.
func (t Type) JoinedByConstructor() bool {
	return t == Type(specs.UserNamespace) || t == Type(specs.MountNamespace) || t == Type(specs.TimeNamespace) ||
		t == Type(specs.CgroupNamespace)
}

// All lists every type, in join order.
func All() []Type {
	return []Type{
		Type(specs.UserNamespace), Type(specs.IPCNamespace), Type(specs.UTSNamespace),
		Type(specs.NetworkNamespace), Type(specs.PIDNamespace), Type(specs.CgroupNamespace),
		Type(specs.TimeNamespace), Type(specs.MountNamespace),
	}
}

// SortForJoin orders joins like runc's nsexec: user first (it grants the
// capabilities for the rest), mount last.
func SortForJoin(ns []Namespace) []Namespace {
	rank := map[Type]int{}
	for i, t := range All() {
		rank[t] = i
	}
	out := append([]Namespace(nil), ns...)
	sort.SliceStable(out, func(i, j int) bool { return rank[out[i].Type] < rank[out[j].Type] })
	return out
}
