package saga

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/security"
)

func TestPlan(t *testing.T) {
	s := mustParse(t, "p", `
name: p
steps:
  - name: ignore
    when: body.eventType != "milestone"
    respond: {body: {ignored: true}}
  - name: ids
    set: {loan: "${ body.meta.resourceId }"}
  - name: fetch
    http:
      url: http://los.example/loans/${ vars.loan }
      headers: {Authorization: "Bearer ${ secret('los_token') }"}
  - name: stale
    when: steps.fetch.output != nil && steps.fetch.output.body.stale == true
    respond: {body: {ignored: stale}}
  - name: notify
    http:
      method: POST
      url: http://crm.example/tasks
      json: {loan: "${ vars.loan }", milestone: "${ steps.fetch.output?.body?.milestone }"}
  - name: done
    respond: {status: 201}
on_failure:
  log: {message: "failed: ${ error.message }"}
`)
	inv := invocation(s, payload(t, "encompass-loan-milestone.json"))
	inv.Secrets = map[string]security.Secret{"los_token": security.NewSecret("los-SECRET")}

	pr, err := Plan(s, inv)
	if err != nil {
		t.Fatal(err)
	}
	decisions := map[string]string{}
	for _, ps := range pr.Steps {
		decisions[ps.Name] = ps.Decision
	}
	t.Run("each step gets a decision", func(t *testing.T) {
		want := map[string]string{"ignore": PlanSkip, "ids": PlanRun, "fetch": PlanRun, "stale": PlanUnknown, "notify": PlanRun, "done": PlanRun}
		if !reflect.DeepEqual(decisions, want) {
			t.Errorf("decisions %v\nwant      %v", decisions, want)
		}
	})
	t.Run("set steps apply so later arguments render", func(t *testing.T) {
		in := pr.Steps[2].Input.(map[string]any)
		if in["url"] != "http://los.example/loans/af43e4cd-cf58-4a7f-ba8a-5bea2496ec2d" {
			t.Errorf("fetch url %v", in["url"])
		}
	})
	t.Run("a credential header shows as <redacted>", func(t *testing.T) {
		if got := toJSON(pr); strings.Contains(got, "los-SECRET") || !strings.Contains(got, `"Authorization":"\u003credacted\u003e"`) {
			t.Errorf("plan %s", got)
		}
	})
	t.Run("a condition on an output plan does not have is explained", func(t *testing.T) {
		if r := pr.Steps[3].Reason; !strings.Contains(r, "steps.fetch") || !strings.Contains(r, "false") {
			t.Errorf("reason %q", r)
		}
		if r := pr.Steps[4].Reason; !strings.Contains(r, "arguments read steps.fetch") {
			t.Errorf("notify reason %q", r)
		}
	})
	t.Run("a respond after an undecided one leaves the ending unknown", func(t *testing.T) {
		if pr.Ends != "unknown" || pr.Answer != nil {
			t.Errorf("ends %q answer %v", pr.Ends, pr.Answer)
		}
	})
	t.Run("on_failure is rendered with a placeholder error", func(t *testing.T) {
		if pr.OnFailure == nil || !strings.Contains(toJSON(pr.OnFailure.Input), "failed: \\u003cerror message\\u003e") {
			t.Errorf("on_failure %+v", pr.OnFailure)
		}
	})
	t.Run("a respond that surely runs ends the plan", func(t *testing.T) {
		pr, _ := Plan(s, invocation(s, payload(t, "encompass-loan-create.json")))
		if pr.Ends != "respond at ignore" || pr.Answer == nil || pr.Steps[1].Decision != PlanNotReached {
			t.Errorf("ends %q answer %v steps %+v", pr.Ends, pr.Answer, pr.Steps)
		}
	})
	t.Run("a template that fails to render is shown, not fatal", func(t *testing.T) {
		pr, err := Plan(s, invocation(s, map[string]any{"eventType": "milestone"}))
		if err != nil || pr.Steps[1].Error == "" {
			t.Errorf("err %v, ids step %+v", err, pr.Steps[1])
		}
	})
}
