// Package clitest runs the socialrx binary as an engineer runs it at 2 a.m.: built once (go build
// ./cmd/socialrx), started as a process in a directory of the test's choosing, with only the environment an
// operator's shell would give it. It has no code outside its tests; it is a package of its own so that
// `go test ./cmd/socialrx` stays in-process.
package clitest
