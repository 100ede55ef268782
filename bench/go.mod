module github.com/taskfleet/taskfleet/bench

go 1.26.0

replace github.com/taskfleet/taskfleet => ../

require (
	github.com/go-co-op/gocron/v2 v2.21.2
	github.com/jonboulle/clockwork v0.5.0
	github.com/robfig/cron/v3 v3.0.1
	github.com/taskfleet/taskfleet v0.0.0-00010101000000-000000000000
	github.com/teambition/rrule-go v1.8.2
)

require github.com/google/uuid v1.6.0 // indirect
