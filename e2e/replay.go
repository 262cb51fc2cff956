package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// ReplayReport checks a failure report (the directory a fault test writes
// when its history is not linearizable) again, pool by pool, and shows
// through logf where an illegal pool's history stops linearizing:
//
//	go run ./e2e/cmd/replayreport <report dir>
func ReplayReport(dir string, logf func(format string, args ...any)) error {
	var events []StreamEvent
	if err := readJSON(filepath.Join(dir, "stream.json"), &events); err != nil {
		return err
	}
	gt := GroundTruthOf(events)
	capacities := map[string]int{}
	for pool, f := range gt.Final {
		capacities[pool] = f.Capacity
	}
	files, _ := filepath.Glob(filepath.Join(dir, "client-*.json"))
	var all []Op
	for _, f := range files {
		var ops []Op
		if err := readJSON(f, &ops); err != nil {
			return err
		}
		all = append(all, ops...)
	}
	res := Check(all, capacities, gt, nil, time.Minute)
	logf("%s", res.Figures())
	ops := res.Ops
	if _, err := os.Stat(filepath.Join(dir, "checked.json")); err == nil {
		// The history as the test checked it: its lapse windows also
		// depend on the clock schedule, which the stream does not hold.
		var checked []Op
		if err := readJSON(filepath.Join(dir, "checked.json"), &checked); err != nil {
			return err
		}
		ops = make([]porcupine.Operation, len(checked))
		for i, op := range checked {
			ops[i] = porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Call, Output: op, Return: op.Return}
		}
		logf("checking checked.json (%d operations) again", len(ops))
	}
	model := NewModel(capacities)
	for _, part := range model.Partition(ops) {
		pool := part[0].Input.(Op).Pool
		start := time.Now()
		result := porcupine.CheckOperationsTimeout(model, part, time.Minute)
		logf("pool %s: %d ops: %s in %v", pool, len(part), result, time.Since(start).Round(time.Millisecond))
		if result == porcupine.Ok {
			continue
		}
		_, info := porcupine.CheckOperationsVerbose(model, part, time.Minute)
		// The longest partial linearization, and the operations that were
		// pending after it.
		var longest []int
		for _, p := range info.PartialLinearizations()[0] {
			if len(p) > len(longest) {
				longest = p
			}
		}
		state := model.Init()
		done := map[int]bool{}
		var maxCall int64
		for _, i := range longest {
			_, state = model.Step(state, part[i].Input, part[i].Output)
			done[i] = true
			maxCall = max(maxCall, part[i].Call)
		}
		logf("longest partial linearization: %d ops; state after it: %s", len(longest), model.DescribeState(state))
		for _, i := range longest[max(0, len(longest)-5):] {
			op := part[i].Output.(Op)
			logf("  last: [%v, %v] client %d target %d %s", time.Duration(op.Call), time.Duration(op.Return), op.Client, op.Target, describeOp(op))
		}
		var pending []porcupine.Operation
		minReturn := int64(1<<63 - 1)
		for i, op := range part {
			if !done[i] {
				pending = append(pending, op)
				minReturn = min(minReturn, op.Return)
			}
		}
		sort.Slice(pending, func(a, b int) bool { return pending[a].Call < pending[b].Call })
		for _, p := range pending {
			if p.Call > minReturn {
				break
			}
			op := p.Output.(Op)
			ok, _ := model.Step(state, p.Input, p.Output)
			logf("  next candidate: [%v, %v] client %d target %d %s (legal now: %v)", time.Duration(op.Call), time.Duration(op.Return), op.Client, op.Target, describeOp(op), ok)
		}
	}
	return nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}
