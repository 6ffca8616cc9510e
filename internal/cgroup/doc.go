// Package cgroup reads and empties cgroup v2 directories on Linux: where
// the hierarchy is mounted, which cgroup a process is in, its processes,
// killing them and removing the cgroup. The agent contains its apps with
// it; the reaper cleans up after agents with it. Elsewhere it is empty.
package cgroup
