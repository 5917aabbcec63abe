package twin

// CheckPatch checks a service twin patch ({"tags":{...},"properties":{"desired":{...}}}) as
// [Store.Update] would, without applying it: the same 400004 errors for bad keys, values and
// nesting. Jobs use it to refuse a bad updateTwin when the job is scheduled rather than on every
// device.
func CheckPatch(body []byte) error {
	_, err := parseServiceBody(body)
	return err
}
