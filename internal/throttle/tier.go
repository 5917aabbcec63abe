package throttle

import (
	"fmt"
	"strings"
)

// Class is an operation class of IoT Hub's throttle table (spec/service-api.md §4.2).
type Class int

// The operation classes, each with its own rate.
const (
	Registry   Class = iota // identity registry operations (create, get, list, update, delete)
	Connect                 // new device connections
	D2C                     // device-to-cloud sends
	C2DSend                 // cloud-to-device sends (standard tiers only)
	C2DReceive              // cloud-to-device receives over HTTPS
	FileUpload              // file upload initiations
	Methods                 // direct methods, metered in 4 KB of request payload
	TwinRead                // twin reads (device and module, from devices and the service)
	TwinUpdate              // twin updates (device and module, from devices and the service)
	Query                   // queries
	Jobs                    // jobs operations (create, update, list, delete)
	JobDevices              // jobs per-device operations (a job's twin update or method call on one device)
	numClasses
)

var classNames = [numClasses]string{"registry", "connect", "d2c", "c2dSend", "c2dReceive", "fileUpload",
	"methods", "twinRead", "twinUpdate", "query", "jobs", "jobDevices"}

// Classes returns every operation class, in the tier table's order.
func Classes() []Class {
	out := make([]Class, numClasses)
	for i := range out {
		out[i] = Class(i)
	}
	return out
}

// String returns the class's name as metrics and logs show it.
func (c Class) String() string {
	if c < 0 || c >= numClasses {
		return fmt.Sprintf("class(%d)", int(c))
	}
	return classNames[c]
}

// standardOnly reports whether the basic tiers lack the class's feature.
func (c Class) standardOnly() bool {
	switch c {
	case C2DSend, C2DReceive, Methods, TwinRead, TwinUpdate, Jobs, JobDevices:
		return true
	}
	return false
}

// SKUs Roost accepts for --sku. Unlimited turns throttling and the daily quota off.
const Unlimited = "unlimited"

var skus = []string{"F1", "B1", "B2", "B3", "S1", "S2", "S3", Unlimited}

// SKUs lists the accepted --sku values.
func SKUs() []string { return append([]string(nil), skus...) }

// tier is one edition's row set: the size column (1, 2 or 3), whether it is basic, the most
// units it allows and its daily quota per unit.
type tier struct {
	size      int
	basic     bool
	free      bool
	maxUnits  int
	quota     int64 // messages per day per unit (F1: in total)
	meterSize int   // bytes per metered message
}

func lookup(sku string) (tier, bool) {
	switch strings.ToUpper(sku) {
	case "F1":
		return tier{size: 1, free: true, maxUnits: 1, quota: 8000, meterSize: 512}, true
	case "B1":
		return tier{size: 1, basic: true, maxUnits: 200, quota: 400_000, meterSize: 4096}, true
	case "S1":
		return tier{size: 1, maxUnits: 200, quota: 400_000, meterSize: 4096}, true
	case "B2":
		return tier{size: 2, basic: true, maxUnits: 200, quota: 6_000_000, meterSize: 4096}, true
	case "S2":
		return tier{size: 2, maxUnits: 200, quota: 6_000_000, meterSize: 4096}, true
	case "B3":
		return tier{size: 3, basic: true, maxUnits: 10, quota: 300_000_000, meterSize: 4096}, true
	case "S3":
		return tier{size: 3, maxUnits: 10, quota: 300_000_000, meterSize: 4096}, true
	}
	return tier{}, false
}

// ValidateSKU checks a --sku and --units pair. An empty sku means [Unlimited].
func ValidateSKU(sku string, units int) error {
	if sku == "" || strings.EqualFold(sku, Unlimited) {
		return nil
	}
	t, ok := lookup(sku)
	if !ok {
		return fmt.Errorf("sku %q: must be one of %s", sku, strings.Join(skus, ", "))
	}
	if units < 1 || units > t.maxUnits {
		return fmt.Errorf("sku %s allows 1 to %d units; %d configured", strings.ToUpper(sku), t.maxUnits, units)
	}
	return nil
}

// Rate returns the class's hub-wide rate per second for the tier and unit count
// (spec/service-api.md §4.2). For [Methods] it is in 4 KB meters per second.
func Rate(sku string, units int, c Class) float64 {
	t, ok := lookup(sku)
	if !ok {
		return 0
	}
	u := float64(units)
	perMin := func(n float64) float64 { return n / 60 }
	switch c {
	case Registry, FileUpload, C2DSend, Jobs:
		if t.size == 3 {
			return perMin(5000) * u
		}
		return perMin(100) * u
	case Connect, D2C:
		switch t.size {
		case 1:
			return max(100, 12*u)
		case 2:
			return 120 * u
		}
		return 6000 * u
	case C2DReceive:
		if t.size == 3 {
			return perMin(50_000) * u
		}
		return perMin(1000) * u
	case Query:
		if t.size == 3 {
			return perMin(1000) * u
		}
		return perMin(20) * u
	case Methods: // 160 KB/s/unit, 480 KB/s/unit, 24 MB/s/unit in 4 KB meters
		switch t.size {
		case 1:
			return 40 * u
		case 2:
			return 120 * u
		}
		return 6000 * u
	case TwinRead:
		switch t.size {
		case 1:
			return 100
		case 2:
			return max(100, 10*u)
		}
		return 500 * u
	case TwinUpdate:
		switch t.size {
		case 1:
			return 50
		case 2:
			return max(50, 5*u)
		}
		return 250 * u
	case JobDevices:
		switch t.size {
		case 1:
			return 10
		case 2:
			return max(10, u)
		}
		return 50 * u
	}
	return 0
}

// DailyQuota returns the tier's daily message quota for the unit count and the size of one
// metered message in bytes (512 on F1, 4096 otherwise). Zero means no quota.
func DailyQuota(sku string, units int) (messages int64, meter int) {
	t, ok := lookup(sku)
	if !ok {
		return 0, 0
	}
	if t.free {
		return t.quota, t.meterSize
	}
	return t.quota * int64(units), t.meterSize
}

// Meters returns how many messages of meter bytes a payload of size bytes counts as: at least
// one.
func Meters(size, meter int) int {
	if meter <= 0 || size <= meter {
		return 1
	}
	return (size + meter - 1) / meter
}
