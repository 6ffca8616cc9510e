// Package reaper stops what zerodown agents leave running on purpose: an
// agent's apps outlive it, so a sandbox that is torn down (the demo, a
// test) stops them itself, and removes the cgroups the agent made for them.
package reaper
