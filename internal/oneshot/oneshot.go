// Package oneshot goes from an image reference to a running, networked
// container and back, the way podman and docker users expect: pull if
// missing, an overlay bundle from the layer cache (a writable layer unless
// --read-only), the image config honoured (entrypoint and cmd, env, working
// dir, user and groups resolved in the image, stop signal, exposed ports,
// volumes as anonymous volumes, labels), docker-like default security, a
// bridge network with NAT and DNS, named volumes, the runtime, and removal
// of everything with --rm.
//
// There is no daemon and no conmon: the berth process that runs a
// container (a foreground `container run`, or for a detached one a
// background "monitor" berth) is its runner. The runner keeps the log (in
// podman's k8s-file format), records each start and exit in the
// container's record (container.json), and carries out the restart policy.
// The other commands (stop, kill, exec, logs, inspect, cp ...) work from
// the record and the runtime's state.
package oneshot
