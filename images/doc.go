// Package images holds the project's container images, one directory each:
// image.json (what goes in), packages.lock (the pinned Debian packages) and
// the Dockerfile rendered from both. `make images` builds them with
// hack/imagebuild; the tests here check that the Dockerfiles agree with the
// specs, that the locks are closed under dependencies, and build the images
// and run what they hold.
package images
