// Package event defines the types every other Vigil package speaks: the
// runtime Event a sensor emits (process, network and file activity with its
// container attribution) and the JSON shape of DESIGN.md's event contract.
//
// It imports nothing of Vigil's own, so that the sensor, the detection engine,
// the server and the exporters can all depend on it without cycles.
package event
