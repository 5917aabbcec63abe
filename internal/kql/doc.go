// Package kql is a query engine for the subset of the Kusto Query Language (KQL) that IoT Hub's
// troubleshooting documents use, run over Roost's diagnostic logs and metrics.
//
// A [Catalog] names the tables a query can read; [Run] parses and runs a query against it:
//
//	res, err := kql.Run(ctx, kql.Catalog{diagTable, metricsTable}, `
//		search *
//		| where ( Type == "AzureDiagnostics" and ResourceType == "IOTHUBS")
//		| where ( Category == "Connections" and Level == "Error")`, kql.Options{})
//
// Errors in a query are [*Error] values naming the line and column. Runs are bounded: a
// deadline (Options.Timeout), a memory budget for the operators that hold rows (summarize, sort,
// top, distinct), a cap on the rows returned, a nesting limit in the parser and linear-time
// regular expressions.
//
// Supported: sources (a table name, search [kind=...] [in (T, ...)] * | predicate, union,
// print, let name = constant;), operators (where/filter, search, project, project-away,
// project-rename, extend, summarize ... by with bin(), order/sort by, top, take/limit,
// distinct, count, getschema, render), scalar functions (parse_json/todynamic, tostring,
// toint, tolong, todouble/toreal, tobool, todatetime, totimespan, ago, now, bin/floor,
// startofday, startofhour, datetime_add, format_datetime, iff/iif, case, coalesce, isempty,
// isnotempty, isnull, isnotnull, strlen, tolower, toupper, strcat, substring, split, trim,
// replace_string, extract, abs, round, min_of, max_of, array_length, bag_keys, gettype, not,
// explain), aggregations (count, countif, dcount, dcountif, sum, sumif, avg, avgif, min, max,
// make_set, make_list, arg_max, arg_min, take_any), literals (strings in single or double
// quotes, verbatim @"...", numbers, timespans such as 1d 2h 30m 10s 100ms, datetime(...),
// timespan(...), dynamic(...), true, false), operators (== != =~ !~ < <= > >= + - * / %, and,
// or, contains, has, startswith, endswith, hasprefix, hassuffix with their _cs and ! forms,
// in, !in, in~, !in~, has_any, has_all, between, !between, matches regex) and // comments.
//
// Where Roost differs from Kusto: a column name that matches only when case is ignored is
// accepted with a warning (Kusto rejects it; an IoT Hub doc spells category in lower case),
// values of different types compare by their text (ResultType == 429001 matches the string
// "429001"), and dcount is exact.
package kql
