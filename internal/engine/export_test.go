package engine

import "context"

// LeaderGetForTest reads the last message on subj of an object store through the stream leader.
func LeaderGetForTest(ctx context.Context, o *Objects, subj string) ([]byte, error) {
	return o.leaderGet(ctx, subj)
}
