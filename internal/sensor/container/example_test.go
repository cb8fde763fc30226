package container_test

import (
	"fmt"
	"log"

	"github.com/vigil-sec/vigil/internal/sensor/container"
)

func ExampleParsePath() {
	for _, p := range []string{
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod8b1e6f7c_2d3a_4b5c_9d8e_7f6a5b4c3d2e.slice/cri-containerd-4c6b0e8f2a1d3e5f7a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f.scope",
		"/kubepods/besteffort/pod8b1e6f7c-2d3a-4b5c-9d8e-7f6a5b4c3d2e/vigil-test-abc123",
		"/system.slice/ssh.service",
	} {
		ref, ok := container.ParsePath(p)
		fmt.Printf("%v id=%.12s runtime=%q pod=%s\n", ok, ref.ID, ref.Runtime, ref.PodUID)
	}
	// Output:
	// true id=4c6b0e8f2a1d runtime="containerd" pod=8b1e6f7c-2d3a-4b5c-9d8e-7f6a5b4c3d2e
	// true id=vigil-test-a runtime="" pod=8b1e6f7c-2d3a-4b5c-9d8e-7f6a5b4c3d2e
	// false id= runtime="" pod=
}

func ExampleWorkloadFromOwners() {
	fmt.Println(container.WorkloadFromOwners("ReplicaSet", "web-7d9f8c6b5"))
	fmt.Println(container.WorkloadFromOwners("Job", "backup-28391234"))
	fmt.Println(container.WorkloadFromOwners("StatefulSet", "db"))
	// Output:
	// Deployment/web
	// CronJob/backup
	// StatefulSet/db
}

// The sensor's wiring: one Resolver for the node, its warnings in the
// sensor's health report.
func ExampleNewResolver() {
	r, err := container.NewResolver(container.Options{HostRoot: "/"})
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range r.Warnings() {
		log.Print(w)
	}
	c := r.Resolve(1, 0, 1) // the root cgroup: a host process
	fmt.Println(c == nil)
}
