package main

// The metrics example prints the taskfleet series the Prometheus exporter
// gathered after one simulated day and one manual start on three devices.
func Example() {
	main()
	// Output:
	// taskfleet_agent_outbox_depth 0
	// taskfleet_agent_results_queued_total 12
	// taskfleet_agent_runs_started_total 6
	// taskfleet_engine_devices_connected 3
	// taskfleet_engine_dispatch_lag_seconds observed=true
	// taskfleet_engine_results_recorded_total 12
	// taskfleet_engine_runs_dispatched_total 9
	// taskfleet_engine_store_duration_seconds observed=true
}
