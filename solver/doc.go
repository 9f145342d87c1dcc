// Package solver runs a build graph. Each Vertex holds an Op and the vertices
// whose results it consumes. Solve computes every vertex's cache key from its
// op's own key and its inputs' keys, looks it up in the store, and runs only
// what is missing: each vertex at most once (identical vertices, by key, run
// once), independent vertices in parallel, the first failure cancelling the
// rest.
package solver
