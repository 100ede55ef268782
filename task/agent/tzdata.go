//go:build taskfleet_tzdata

package agent

// Built with -tags taskfleet_tzdata, the agent embeds Go's zone database
// (package time/tzdata, about 450 KB), which the time package uses when
// the device has no zone files of its own (Windows, minimal containers):
// see "Time zones" in the package documentation.
import _ "time/tzdata"
