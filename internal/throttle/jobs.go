package throttle

import (
	"strings"

	"github.com/roost-iot/roost/internal/errcode"
)

// MaxActiveJobs returns how many jobs v2 (scheduled twin updates and device methods) may be
// active at once on the tier: 1 on F1 and S1, 5 on S2, 10 on S3 (spec/service-api.md §4.4).
// Zero means no limit (the unlimited hub); the basic tiers have no jobs at all (see
// [Throttler.JobsFeature]).
func MaxActiveJobs(sku string) int {
	switch strings.ToUpper(sku) {
	case "F1", "S1":
		return 1
	case "S2":
		return 5
	case "S3":
		return 10
	}
	return 0
}

// MaxActiveJobs returns the tier's limit on active jobs; zero on the unlimited hub.
func (t *Throttler) MaxActiveJobs() int {
	if t == nil {
		return 0
	}
	return MaxActiveJobs(t.sku)
}

// JobsFeature refuses jobs on a basic tier with 403010 OperationNotAvailableInCurrentTier, the
// code IoT Hub documents for a feature the tier lacks. (The other standard-only features answer
// [Throttler.Feature]'s 404013; jobs take the more precise code because the SDKs surface 403 as a
// quota-style error the caller can act on.)
func (t *Throttler) JobsFeature() error {
	if t == nil || !t.tier.basic {
		return nil
	}
	return errcode.New(errcode.OperationNotAvailableInCurrentTier, "jobs are not available on the %s tier (use a standard tier: S1, S2, S3)", t.sku)
}
