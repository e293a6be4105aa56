package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/proteus-defense/proteus/executor"
)

// labelEgress is "deny" on pods of variants without AllowOutbound; the pool's egress policy
// selects them.
const labelEgress = "proteus.io/egress"

func (d *Driver) budgetName() string       { return "proteus-" + d.opts.Pool }
func (d *Driver) egressPolicyName() string { return "proteus-" + d.opts.Pool + "-no-egress" }
func quarantinePolicyName(id string) string {
	return "proteus-quarantine-" + id
}

func (d *Driver) meta(name string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Name: name, Namespace: d.opts.Namespace, Labels: map[string]string{LabelManagedBy: ManagedBy, LabelPool: d.opts.Pool}}
	if o := d.opts.Owner; o != nil {
		ref := *o
		ref.Controller, ref.BlockOwnerDeletion = nil, nil
		m.OwnerReferences = []metav1.OwnerReference{ref}
	}
	return m
}

// ensureBudget creates (once per driver) the pool's PodDisruptionBudget, whose floor is the
// pool's min so voluntary evictions (a node drain) respect the same floor as rotation, and
// the NetworkPolicy that denies egress to pods of variants without allow_outbound.
func (d *Driver) ensureBudget(ctx context.Context) error {
	d.mu.Lock()
	done := d.pdbDone
	d.mu.Unlock()
	if done {
		return nil
	}
	ns := d.opts.Namespace
	if d.opts.MinAvailable > 0 {
		minAvail := intstr.FromInt32(int32(d.opts.MinAvailable))
		pdb := &policyv1.PodDisruptionBudget{ObjectMeta: d.meta(d.budgetName()), Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &minAvail,
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{LabelManagedBy: ManagedBy, LabelPool: d.opts.Pool, LabelRole: RoleExecutor}},
		}}
		err := d.retry(ctx, "create", "poddisruptionbudget "+pdb.Name, func(ctx context.Context) error {
			_, err := d.cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return d.updateBudget(ctx, pdb)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	np := &networkingv1.NetworkPolicy{ObjectMeta: d.meta(d.egressPolicyName()), Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelManagedBy: ManagedBy, LabelPool: d.opts.Pool, labelEgress: "deny"}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
	}}
	if err := d.createPolicy(ctx, np); err != nil {
		return err
	}
	d.mu.Lock()
	d.pdbDone = true
	d.mu.Unlock()
	return nil
}

// updateBudget sets an existing budget's floor and selector (an earlier agent may have had
// another min); a conflict is retried by the caller's retry.
func (d *Driver) updateBudget(ctx context.Context, want *policyv1.PodDisruptionBudget) error {
	cur, err := d.cs.PolicyV1().PodDisruptionBudgets(d.opts.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.Labels[LabelManagedBy] != ManagedBy || cur.Labels[LabelPool] != d.opts.Pool {
		return fmt.Errorf("poddisruptionbudget %s exists and is not this pool's: %w", want.Name, ErrNotOwned)
	}
	cur.Spec = want.Spec
	_, err = d.cs.PolicyV1().PodDisruptionBudgets(d.opts.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// createPolicy creates a NetworkPolicy; one of the same name that this pool owns is kept.
func (d *Driver) createPolicy(ctx context.Context, np *networkingv1.NetworkPolicy) error {
	return d.retry(ctx, "create", "networkpolicy "+np.Name, func(ctx context.Context) error {
		_, err := d.cs.NetworkingV1().NetworkPolicies(d.opts.Namespace).Create(ctx, np, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			cur, gerr := d.cs.NetworkingV1().NetworkPolicies(d.opts.Namespace).Get(ctx, np.Name, metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			if cur.Labels[LabelManagedBy] != ManagedBy || cur.Labels[LabelPool] != d.opts.Pool {
				return fmt.Errorf("networkpolicy %s exists and is not this pool's: %w", np.Name, ErrNotOwned)
			}
			return nil
		}
		return err
	})
}

func (d *Driver) deletePolicy(ctx context.Context, name string) error {
	return d.retry(ctx, "delete", "networkpolicy "+name, func(ctx context.Context) error {
		err := d.cs.NetworkingV1().NetworkPolicies(d.opts.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

var nonLabel = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// reasonLabel reduces a reason to a label value (at most 63 characters, alphanumeric at both
// ends); the full reason is in the annotation.
func reasonLabel(r string) string {
	r = nonLabel.ReplaceAllString(r, "_")
	if len(r) > 63 {
		r = r[:63]
	}
	r = strings.Trim(r, "_.-")
	if r == "" {
		return "unspecified"
	}
	return r
}

// Quarantine cuts inst's pod off with a NetworkPolicy that denies all ingress and egress
// (owned by the pod, so it goes with it), then relabels the pod quarantined (out of the pool's
// budget and listing) with the reason. The pod keeps running for forensics and is deleted
// after the retention.
func (d *Driver) Quarantine(ctx context.Context, inst *executor.Instance) error {
	p, err := d.ownPod(inst)
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("executor/kubernetes: quarantine pod %s: not found", inst.Handle)
	}
	reason := executor.Reason(ctx)
	np := &networkingv1.NetworkPolicy{ObjectMeta: d.meta(quarantinePolicyName(inst.ID)), Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelManagedBy: ManagedBy, LabelPool: d.opts.Pool, LabelExecutor: inst.ID}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
	}}
	np.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: p.Name, UID: p.UID}}
	np.Labels[LabelExecutor] = inst.ID
	if err := d.createPolicy(ctx, np); err != nil {
		return err
	}
	at := time.Now().UTC().Format(time.RFC3339)
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q,%q:%q},"annotations":{%q:%q,%q:%q}}}`,
		LabelRole, RoleQuarantined, LabelReason, reasonLabel(reason), AnnotQuarantined, at, AnnotReason, reason)
	err = d.retry(ctx, "patch", "pod "+p.Name, func(ctx context.Context) error {
		_, err := d.cs.CoreV1().Pods(d.opts.Namespace).Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	})
	if err != nil {
		return err
	}
	d.log.Warn("executor pod quarantined", "pod", p.Name, "reason", reason, "policy", np.Name, "retention", d.opts.QuarantineRetention)
	d.publish(executor.EventQuarantined, inst.ID, map[string]any{"variant": inst.Variant, "pod": p.Name, "reason": reason,
		"network_policy": np.Name, "retention_s": d.opts.QuarantineRetention.Seconds()})
	return nil
}

// sweepLoop deletes expired quarantined pods every minute (or a quarter of the retention).
func (d *Driver) sweepLoop() {
	defer d.janitor.Done()
	every := min(time.Minute, max(d.opts.QuarantineRetention/4, 100*time.Millisecond))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.life.Done():
			return
		case <-t.C:
			if d.informer.HasSynced() {
				if err := d.sweep(d.life); err != nil && d.life.Err() == nil {
					d.log.Warn("quarantine sweep", "err", err)
				}
			}
		}
	}
}

// sweep deletes quarantined pods older than the retention (a pod without a readable time is
// taken as expired) and their policies.
func (d *Driver) sweep(ctx context.Context) error {
	ps, err := d.pods.Pods(d.opts.Namespace).List(d.roleSelector(RoleQuarantined))
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ps {
		at, perr := time.Parse(time.RFC3339, p.Annotations[AnnotQuarantined])
		if perr == nil && time.Since(at) < d.opts.QuarantineRetention || p.DeletionTimestamp != nil {
			continue
		}
		d.log.Info("quarantine retention over; deleting pod", "pod", p.Name, "quarantined_at", p.Annotations[AnnotQuarantined])
		if err := d.deletePod(ctx, p.Name, 0); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := d.deletePolicy(ctx, quarantinePolicyName(p.Labels[LabelExecutor])); err != nil {
			errs = append(errs, err)
		}
		d.publish(executor.EventStopped, p.Labels[LabelExecutor], map[string]any{"variant": p.Labels[LabelVariant], "pod": p.Name, "reason": "quarantine retention over"})
	}
	return errors.Join(errs...)
}

// Cleanup runs the retention sweep once, at pool start.
func (d *Driver) Cleanup(ctx context.Context) error {
	if err := d.synced(ctx); err != nil {
		return err
	}
	return d.sweep(ctx)
}
