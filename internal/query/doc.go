// Package query is IoT Hub's query language over twin documents: the SQL-like language of
// POST /devices/query, and the bare conditions of jobs and configurations.
//
//	page, err := query.Run(ctx, twins.Scan, query.Request{
//		Query:    "SELECT * FROM devices WHERE tags.location.region = 'US'",
//		PageSize: 100,
//	})
//	// page.Items, page.ItemType ("twin"), page.Continuation ("" on the last page)
//
//	cond, err := query.ParseCondition("deviceId IN ['d1', 'd2']")
//	if cond.Match(twinDoc) { ... }
//
// The grammar (keywords and function names in any case):
//
//	SELECT [TOP n] * | item [AS name], ...  FROM devices | devices.modules | devices.jobs
//	       [WHERE condition] [GROUP BY path, ...]
//	item:  expression | COUNT() | COUNT(x) | SUM(x) | AVG(x) | MIN(x) | MAX(x)
//
// Expressions are constants (numbers, 0x hexadecimal, 'strings' or "strings", true, false,
// null, undefined, [arrays]), property paths (tags.location.region, properties.reported.fw,
// tags['name with-dash'], tags.list[0]), arithmetic (+ - * / %), comparisons (= != <> < <= >
// >=), x IN [...], x NIN [...] (also NOT IN), AND, OR, NOT, and the functions in functions.go:
// IS_DEFINED, IS_NULL, IS_BOOL, IS_NUMBER, IS_STRING, IS_OBJECT, IS_ARRAY, IS_PRIMITIVE,
// STARTSWITH (or STARTS_WITH), ENDSWITH (or ENDS_WITH), CONTAINS, INDEX_OF, LOWER, UPPER,
// LENGTH, CONCAT, SUBSTRING, AS_NUMBER, ABS, CEILING, FLOOR, EXP, POWER, SIGN, SQRT, SQUARE.
//
// Semantics follow IoT Hub (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-query-language):
//
//   - A document is in the result only when the condition is the boolean true; null, undefined,
//     strings, numbers and objects count as false.
//   - Comparisons are between primitives of the same type; anything else (a missing property, a
//     string against a number, an object) is undefined, so neither x = 1 nor x != 1 holds when
//     x is missing. Strings compare by code point, case-sensitively.
//   - Property names match in any case when no property has the exact name; the twin's top-level
//     names come back in IoT Hub's case (SELECT DeviceId gives "deviceId").
//   - A SELECT item without AS is named after its last path element, else $1, $2, ...;
//     undefined values are left out of a row.
//   - With aggregates, every other item must be a GROUP BY path. COUNT() counts documents,
//     COUNT(x) those where x is defined; SUM and AVG add numbers and ignore other values (SUM of
//     none is 0, AVG of none is left out); MIN and MAX order null < booleans < numbers < strings.
//
// Results are ordered by deviceId and moduleId (groups by their key). A continuation token
// encodes the last item's key and how many items were sent, so paging needs no state on the
// server and any node can serve the next page. Each page reads the whole collection (a scan with
// a bounded heap of the page's size); BenchmarkQuery measures the cost.
//
// Errors are [*errcode.Error] values with code 400004 ArgumentInvalid; for a problem in the text
// the cause is a [*SyntaxError] giving the line and column.
package query
