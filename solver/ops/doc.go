// Package ops holds the solver operations a Dockerfile turns into: an image
// or empty source, a RUN executed in a container, and a file operation
// (COPY, ADD, WORKDIR's mkdir) applied inside a container.
package ops
