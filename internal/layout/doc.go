// Package layout holds no code, only tests about the code base itself: the dependency rules of
// DESIGN.md (domain packages never import the edges; only internal/engine imports NATS) and the
// doc comment every package must carry.
package layout
