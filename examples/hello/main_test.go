package main

// The hello world prints the statistics of its one task after one
// simulated day: every device ran it at 09:00 on its own clock.
func Example() {
	main()
	// Output:
	// Daily scan: 3 devices, map[completed:3], 100% complete
}
