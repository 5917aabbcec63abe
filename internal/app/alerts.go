package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/roost-iot/roost/internal/alerts"
)

const alertsUsage = `Usage:
  roost alerts list [--output json]            every rule and whether it fires
  roost alerts set NAME (--metric M [--aggregation Average] | --query KQL) --operator OP --threshold N
                   [--window 5m] [--every 1m] [--severity 3] [--webhook URL]... [--description TEXT]
  roost alerts apply FILE                      add or replace the rules of a YAML or JSON file
  roost alerts show NAME
  roost alerts delete NAME
  roost alerts history [--since 24h]

A metric rule compares a metric aggregated over the window (AzureMetrics) with the threshold; a
query rule compares the number of rows a KQL query returns over the window. Firing and resolving
are recorded and sent to the webhooks in Azure Monitor's common alert schema.
Operators: GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual, Equals, NotEquals.`

// yamlToJSON turns YAML (or JSON, which is YAML) into JSON.
func yamlToJSON(b []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// loadAlertRules reads a rules file.
func loadAlertRules(path string) ([]alerts.Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rules, err := alerts.DecodeRules(b, yamlToJSON)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rules, nil
}

func runAlerts(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, alertsUsage)
		return 2
	}
	var af adminFlags
	fs := newFlagSet("alerts "+args[0], stderr, alertsUsage)
	af.register(fs)
	metric := fs.String("metric", "", "metric rule: the IoT Hub metric (connectedDeviceCount, ...)")
	agg := fs.String("aggregation", "", "metric rule: Total, Count, Average, Minimum or Maximum (default: the metric's)")
	query := fs.String("query", "", "query rule: KQL whose row count is compared")
	op := fs.String("operator", "", "GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual, Equals, NotEquals")
	threshold := fs.Float64("threshold", 0, "the value compared with")
	window := fs.Duration("window", 5*time.Minute, "the time the value covers")
	every := fs.Duration("every", time.Minute, "how often the rule is evaluated")
	severity := fs.Int("severity", 3, "0 (critical) to 4 (verbose)")
	desc := fs.String("description", "", "what the alert means")
	since := fs.String("since", "24h", "history: RFC 3339 time or duration back from now")
	var hooks multiFlag
	fs.Var(&hooks, "webhook", "URL notified when the rule fires or resolves (repeatable)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return 2
	}
	ad, err := af.admin()
	if err != nil {
		return fail(stderr, "alerts", err)
	}
	name := ""
	if len(pos) > 0 {
		name = pos[0]
	}
	need := func() bool {
		if name == "" {
			fmt.Fprintf(stderr, "roost alerts %s: give the rule's name\n", args[0])
			return false
		}
		return true
	}
	switch args[0] {
	case "list":
		var st []alerts.State
		if err := ad.Do(ctx, "GET", "/alerts", nil, &st); err != nil {
			return fail(stderr, "alerts list", err)
		}
		var rules []alerts.Rule
		if err := ad.Do(ctx, "GET", "/alerts/rules", nil, &rules); err != nil {
			return fail(stderr, "alerts list", err)
		}
		if af.output == "json" {
			printJSON(stdout, map[string]any{"rules": rules, "states": st})
			return 0
		}
		byName := map[string]alerts.State{}
		for _, s := range st {
			byName[s.Rule] = s
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RULE\tCONDITION\tVALUE\tSINCE\tSIGNAL\tNOTE")
		for _, r := range rules {
			s := byName[r.Name]
			cond, val, sinceT := s.Condition, "-", "-"
			if cond == "" {
				cond = "not evaluated"
			}
			if s.Value != nil {
				val = fmt.Sprintf("%g %s %g", *s.Value, r.Operator, r.Threshold)
			}
			if !s.Since.IsZero() {
				sinceT = s.Since.Format(time.RFC3339)
			}
			signal := r.Metric + " " + r.Aggregation
			if r.Query != "" {
				signal = "query rows"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, cond, val, sinceT, signal, s.LastError)
		}
		_ = tw.Flush()
		return 0
	case "set":
		if !need() {
			return 2
		}
		r := alerts.Rule{Name: name, Description: *desc, Metric: *metric, Aggregation: *agg, Query: *query, Operator: *op,
			Threshold: *threshold, Window: alerts.Duration(*window), Every: alerts.Duration(*every), Severity: severity, Webhooks: hooks}
		if err := alerts.Normalize(&r); err != nil {
			fmt.Fprintf(stderr, "roost alerts set: %v\n", err)
			return 2
		}
		var out alerts.Rule
		if err := ad.Do(ctx, "PUT", "/alerts/rules/"+url.PathEscape(name), r, &out); err != nil {
			return fail(stderr, "alerts set", err)
		}
		fmt.Fprintf(stdout, "alert rule %s set\n", out.Name)
		return 0
	case "apply":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "roost alerts apply: give the rules file")
			return 2
		}
		rules, err := loadAlertRules(pos[0])
		if err != nil {
			return fail(stderr, "alerts apply", err)
		}
		for _, r := range rules {
			if err := ad.Do(ctx, "PUT", "/alerts/rules/"+url.PathEscape(r.Name), r, nil); err != nil {
				return fail(stderr, "alerts apply", err)
			}
			fmt.Fprintf(stdout, "alert rule %s set\n", r.Name)
		}
		return 0
	case "show":
		if !need() {
			return 2
		}
		var r alerts.Rule
		if err := ad.Do(ctx, "GET", "/alerts/rules/"+url.PathEscape(name), nil, &r); err != nil {
			return fail(stderr, "alerts show", err)
		}
		printJSON(stdout, r)
		return 0
	case "delete", "remove":
		if !need() {
			return 2
		}
		if err := ad.Do(ctx, "DELETE", "/alerts/rules/"+url.PathEscape(name), nil, nil); err != nil {
			return fail(stderr, "alerts delete", err)
		}
		fmt.Fprintf(stdout, "alert rule %s deleted\n", name)
		return 0
	case "history":
		var h []alerts.Notification
		if err := ad.Do(ctx, "GET", "/alerts/history?since="+url.QueryEscape(*since), nil, &h); err != nil {
			return fail(stderr, "alerts history", err)
		}
		if af.output == "json" {
			printJSON(stdout, h)
			return 0
		}
		for _, n := range h {
			fmt.Fprintf(stdout, "%s  %-8s %-24s %s %g %s %g\n", n.Time.Format(time.RFC3339), n.Condition, n.Rule, n.Severity, n.Value, n.Operator, n.Threshold)
		}
		if len(h) == 0 {
			fmt.Fprintln(stdout, "No alerts fired or resolved in that time.")
		}
		return 0
	}
	fmt.Fprintf(stderr, "roost alerts: unknown command %q\n%s\n", args[0], strings.TrimSpace(alertsUsage))
	return 2
}
