package saga

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// planTimeout bounds a whole plan.
const planTimeout = 10 * time.Second

// Plan decisions for one step.
const (
	PlanRun        = "run"         // the step would run; Input is what it would send
	PlanSkip       = "skip"        // its when is false
	PlanUnknown    = "unknown"     // its when reads the output of a step plan does not run
	PlanNotReached = "not_reached" // an earlier respond or fail ends the run first
)

// PlanResult is what a run of a saga would do for one request, computed without calling
// anything: no http request is sent, no kv state is read or written, nothing is logged.
type PlanResult struct {
	Saga    string     `json:"saga"`
	Version string     `json:"version"`
	Steps   []PlanStep `json:"steps"`
	// Ends says how the run would end: "respond at <step>", "fail at <step>", "after the
	// last step", or "unknown" when a condition plan cannot decide comes first.
	Ends      string         `json:"ends"`
	Answer    *Answer        `json:"answer,omitempty"` // the respond that would answer, if one surely would
	Vars      map[string]any `json:"vars"`             // vars after the set steps plan ran
	OnFailure *PlanStep      `json:"on_failure,omitempty"`
}

// PlanStep is one step of a plan.
type PlanStep struct {
	Name     string `json:"name"`
	Action   string `json:"action"`
	Decision string `json:"decision"`
	Reason   string `json:"reason,omitempty"`
	Input    any    `json:"input,omitempty"` // rendered arguments, secrets as "<secret>"
	Error    string `json:"error,omitempty"` // a condition or template that fails to evaluate
}

// Plan shows which steps a run of s for inv would take and their rendered arguments. Pure
// steps (set) are applied, so later templates see their vars; http and kv steps are not
// performed, so their outputs are nil, and a condition that reads one is marked unknown
// (evaluated anyway with nil outputs, shown in Reason).
func Plan(s *Saga, inv *Invocation) (*PlanResult, error) {
	return PlanWithOutputs(s, inv, nil)
}

// PlanWithOutputs is Plan with outputs for http and kv steps, by step name: a step with
// one is taken to have succeeded with it (steps.<name>.output), so the conditions and
// templates after it render as they would in a run. A step without one stays unknown.
func PlanWithOutputs(s *Saga, inv *Invocation, outputs map[string]any) (*PlanResult, error) {
	if s == nil {
		return nil, errors.New("plan: no saga")
	}
	if inv == nil {
		inv = &Invocation{}
	}
	rs := newRunState(inv.Secrets)
	env := newEnv(inv, rs)
	ev := newEvaluator(env, defaultExprLimits())
	// Each evaluation has the engine's default budgets; the whole plan, the saga's deadline
	// (or planTimeout, if shorter or unset), so no saga holds an admin request for long.
	timeout := planTimeout
	if s.Timeout > 0 && s.Timeout < timeout {
		timeout = s.Timeout
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), timeout, fmt.Errorf("plan timed out after %s", timeout))
	defer cancel()
	ev.bind(ctx) // the evaluator is the plan's own: nothing to bind back
	pr := &PlanResult{Saga: s.Name, Version: s.Version, Ends: "after the last step"}

	unknown := map[string]bool{} // steps whose outputs plan cannot know
	ended, undecided := false, false
	for _, st := range s.Steps {
		ps := PlanStep{Name: st.Name, Action: st.Action.Kind, Decision: PlanRun}
		if ended {
			ps.Decision, ps.Reason = PlanNotReached, "the run ends before this step"
			pr.Steps = append(pr.Steps, ps)
			continue
		}
		if st.when != nil {
			ok, err := ev.evalBool(st.when)
			deps := unknownRefs(st.when.refs, unknown)
			switch {
			case len(deps) > 0:
				ps.Decision = PlanUnknown
				ps.Reason = fmt.Sprintf("when reads %s, which plan does not run; with nil outputs it is %v", deps, ok)
				if err != nil {
					ps.Reason = fmt.Sprintf("when reads %s, which plan does not run; with nil outputs it fails", deps)
				}
			case err != nil:
				ps.Decision = PlanRun
				ps.Error = rs.redactString("when: " + err.Error())
				ps.Reason = "the condition fails to evaluate: the run would fail here"
			case !ok:
				ps.Decision, ps.Reason = PlanSkip, "when is false"
			}
		}
		if ps.Decision == PlanSkip {
			env.Steps[st.Name] = StepState{Status: StatusSkipped}
			pr.Steps = append(pr.Steps, ps)
			continue
		}
		if ps.Error != "" {
			pr.Steps = append(pr.Steps, ps)
			ended, pr.Ends = true, "fail at "+st.Name
			continue
		}
		certain := ps.Decision == PlanRun
		if deps := unknownRefs(actionRefs(st.Action), unknown); len(deps) > 0 {
			note := fmt.Sprintf("arguments read %s, rendered with nil outputs", deps)
			ps.Reason = strings.TrimPrefix(ps.Reason+"; "+note, "; ")
		}
		input, ans, err := planAction(ev, st.Action)
		ps.Input = rs.redact(input)
		if err != nil {
			ps.Error = rs.redactString(err.Error())
		}
		state := StepState{Status: StatusSucceeded, Attempts: 1}
		switch st.Action.Kind {
		case KindHTTP, KindKV:
			if out, ok := outputs[st.Name]; ok {
				state.Output = out
				ps.Reason = strings.TrimPrefix(ps.Reason+"; output given", "; ")
				break
			}
			state.Status = "planned"
			unknown[st.Name] = true
		case KindSet:
			if m, ok := input.(map[string]any); ok && err == nil {
				maps.Copy(env.Vars, m)
			}
			if len(unknownRefs(actionRefs(st.Action), unknown)) > 0 {
				unknown[st.Name] = true
			}
		case KindRespond:
			if certain && !undecided {
				ended, pr.Ends = true, "respond at "+st.Name
				pr.Answer = redactAnswer(rs, ans)
			}
		case KindFail:
			if certain && !undecided {
				ended, pr.Ends = true, "fail at "+st.Name
			}
		}
		if !certain && (st.Action.Kind == KindRespond || st.Action.Kind == KindFail) {
			undecided = true
			pr.Ends = "unknown"
		}
		env.Steps[st.Name] = state
		pr.Steps = append(pr.Steps, ps)
	}
	if s.OnFailure != nil {
		env.Error = &ErrorEnv{Step: "<failing step>", Message: "<error message>"}
		input, _, err := planAction(ev, s.OnFailure)
		ps := &PlanStep{Name: "on_failure", Action: s.OnFailure.Kind, Decision: "if the run fails",
			Input: rs.redact(input)}
		if err != nil {
			ps.Error = rs.redactString(err.Error())
		}
		pr.OnFailure = ps
	}
	pr.Vars, _ = rs.redact(env.Vars).(map[string]any)
	return pr, nil
}

// planAction renders an action without performing it.
func planAction(ev *evaluator, a *Action) (input any, ans *Answer, err error) {
	switch a.Kind {
	case KindHTTP:
		in, err := a.http.render(ev)
		if err != nil {
			return nil, nil, err
		}
		return in.record(), nil, nil
	case KindSet:
		m, err := a.set.render(ev)
		if err != nil {
			return nil, nil, err
		}
		return m, nil, nil
	case KindKV:
		in, err := a.kv.render(ev)
		if err != nil {
			return nil, nil, err
		}
		return in.record(), nil, nil
	case KindRespond:
		ans, err := a.respond.render(ev)
		if err != nil {
			return nil, nil, err
		}
		return answerRecord(ans), ans, nil
	case KindFail:
		msg, err := a.fail.render(ev)
		if err != nil {
			return nil, nil, err
		}
		return map[string]any{"message": msg}, nil, nil
	case KindLog:
		in, err := a.log.render(ev)
		if err != nil {
			return nil, nil, err
		}
		return in.record(), nil, nil
	}
	return nil, nil, fmt.Errorf("unknown action %q", a.Kind)
}

// actionRefs lists the steps an action's templates read.
func actionRefs(a *Action) []string {
	var refs []string
	add := func(vs ...*value) {
		for _, v := range vs {
			if v != nil {
				refs = appendRefs(refs, v.refs)
			}
		}
	}
	switch {
	case a.http != nil:
		add(a.http.url, a.http.headers, a.http.query, a.http.body)
	case a.set != nil:
		add(a.set.vals...)
	case a.kv != nil:
		add(a.kv.key, a.kv.val)
	case a.respond != nil:
		add(a.respond.status, a.respond.headers, a.respond.body)
	case a.fail != nil:
		add(a.fail.message)
	case a.log != nil:
		add(a.log.message, a.log.fields)
	}
	return refs
}

func unknownRefs(refs []string, unknown map[string]bool) string {
	var out []string
	for _, r := range refs {
		if unknown[r] {
			out = append(out, "steps."+r)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
