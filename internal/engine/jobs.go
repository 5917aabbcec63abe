package engine

// JobsSubject is the core subject on which the nodes tell each other about scheduled jobs
// (jobs v2): kind "wake" asks every node to look for jobs to run now, kind "cancel" carries the
// id of a job that was cancelled, so that the node running it stops at once.
//
//	roost.jobs.<kind>
func JobsSubject(kind string) string { return "roost.jobs." + kind }
