// Package registry pulls images from and pushes images to OCI and Docker
// registries, on top of go-containerregistry's remote package.
//
// Pull stores an image in a cache.Store the way exporter.Load does: layers
// are verified against their digests while they stream into the store (and
// their diff IDs against the config), the config and manifest blobs are kept
// byte for byte, so the image ID and the manifest digest are the registry's,
// and the name is tagged only once everything is stored. Push sends a stored
// image as it is, so the registry ends up with the same manifest digest.
//
// Credentials come from the Docker config (~/.docker/config.json or
// $DOCKER_CONFIG, credential helpers included) unless Options name another
// keychain. Registries on loopback addresses may be plain http, as with
// Docker; others only when Options.Insecure lists them.
package registry
