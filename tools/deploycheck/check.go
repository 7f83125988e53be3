package deploycheck

import (
	"fmt"
	"slices"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Paths of the gateway's admin handlers (internal/telemetry/admin.go).
const (
	ReadyPath   = "/readyz"
	LivePath    = "/healthz"
	MetricsPath = "/metrics"
)

// Set is the objects of one deployment (the files of deploy/kubernetes, or one
// rendering of the chart), by kind.
type Set struct {
	Deployments     []*appsv1.Deployment
	Services        []*corev1.Service
	ConfigMaps      []*corev1.ConfigMap
	ServiceAccounts []*corev1.ServiceAccount
	PDBs            []*policyv1.PodDisruptionBudget
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	NetworkPolicies []*networkingv1.NetworkPolicy
	ServiceMonitors []*monitoringv1.ServiceMonitor
	Namespaces      []*corev1.Namespace
	// Other holds objects of kinds no check looks at.
	Other []Object
}

// NewSet sorts objs by kind.
func NewSet(objs []Object) *Set {
	s := &Set{}
	for _, o := range objs {
		switch v := o.Object.(type) {
		case *appsv1.Deployment:
			s.Deployments = append(s.Deployments, v)
		case *corev1.Service:
			s.Services = append(s.Services, v)
		case *corev1.ConfigMap:
			s.ConfigMaps = append(s.ConfigMaps, v)
		case *corev1.ServiceAccount:
			s.ServiceAccounts = append(s.ServiceAccounts, v)
		case *policyv1.PodDisruptionBudget:
			s.PDBs = append(s.PDBs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			s.HPAs = append(s.HPAs, v)
		case *networkingv1.NetworkPolicy:
			s.NetworkPolicies = append(s.NetworkPolicies, v)
		case *monitoringv1.ServiceMonitor:
			s.ServiceMonitors = append(s.ServiceMonitors, v)
		case *corev1.Namespace:
			s.Namespaces = append(s.Namespaces, v)
		default:
			s.Other = append(s.Other, o)
		}
	}
	return s
}

// Check returns every way the set falls short of what the gateway needs, as
// sentences naming the object. The set must hold exactly one Deployment: the
// gateway's.
func Check(s *Set) []error {
	c := &checker{s: s}
	if len(s.Deployments) != 1 {
		c.errorf("want exactly one Deployment, got %d", len(s.Deployments))
		return c.errs
	}
	d := s.Deployments[0]
	c.namespaces()
	c.deployment(d)
	pod := &d.Spec.Template
	admin := c.adminPort(d)
	for _, svc := range s.Services {
		c.service(svc, d, admin)
	}
	for _, p := range s.PDBs {
		c.selects("PodDisruptionBudget "+p.Name, p.Spec.Selector, pod)
		if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
			c.errorf("PodDisruptionBudget %s: set minAvailable or maxUnavailable", p.Name)
		}
		if m := p.Spec.MinAvailable; m != nil && m.Type == intstr.Int {
			for _, h := range s.HPAs {
				if h.Spec.MinReplicas != nil && m.IntVal >= *h.Spec.MinReplicas {
					c.errorf("PodDisruptionBudget %s: minAvailable %d leaves no pod to disrupt at the HorizontalPodAutoscaler's minReplicas %d (node drains would hang)", p.Name, m.IntVal, *h.Spec.MinReplicas)
				}
			}
		}
	}
	for _, h := range s.HPAs {
		c.hpa(h, d)
	}
	for _, np := range s.NetworkPolicies {
		c.networkPolicy(np, d, admin)
	}
	for _, sm := range s.ServiceMonitors {
		c.serviceMonitor(sm, d, admin)
	}
	return c.errs
}

type checker struct {
	s    *Set
	errs []error
}

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// namespaces: every namespaced object in one namespace, named.
func (c *checker) namespaces() {
	var metas []metav1.Object
	for _, d := range c.s.Deployments {
		metas = append(metas, d)
	}
	for _, o := range c.s.Services {
		metas = append(metas, o)
	}
	for _, o := range c.s.ConfigMaps {
		metas = append(metas, o)
	}
	for _, o := range c.s.ServiceAccounts {
		metas = append(metas, o)
	}
	for _, o := range c.s.PDBs {
		metas = append(metas, o)
	}
	for _, o := range c.s.HPAs {
		metas = append(metas, o)
	}
	for _, o := range c.s.NetworkPolicies {
		metas = append(metas, o)
	}
	for _, o := range c.s.ServiceMonitors {
		metas = append(metas, o)
	}
	ns := c.s.Deployments[0].Namespace
	if ns == "" {
		c.errorf("Deployment %s: no metadata.namespace (every object names its namespace)", c.s.Deployments[0].Name)
	}
	for _, m := range metas {
		if m.GetNamespace() != ns {
			c.errorf("%s: namespace %q, the Deployment's is %q", m.GetName(), m.GetNamespace(), ns)
		}
	}
}

func (c *checker) deployment(d *appsv1.Deployment) {
	name := "Deployment " + d.Name
	pod := &d.Spec.Template
	c.selects(name, d.Spec.Selector, pod)
	spec := &pod.Spec
	if len(c.s.HPAs) > 0 && d.Spec.Replicas != nil {
		c.errorf("%s: sets replicas while a HorizontalPodAutoscaler owns the count (every apply would reset it)", name)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		c.errorf("%s: automountServiceAccountToken must be false (the gateway never calls the API server)", name)
	}
	if sa := spec.ServiceAccountName; sa == "" || sa == "default" {
		c.errorf("%s: set a serviceAccountName of its own (SPIRE's Kubernetes attestor names the SVID by it)", name)
	} else if !slices.ContainsFunc(c.s.ServiceAccounts, func(a *corev1.ServiceAccount) bool { return a.Name == sa }) {
		c.errorf("%s: serviceAccountName %q is not among the objects", name, sa)
	}
	if spec.TerminationGracePeriodSeconds == nil {
		c.errorf("%s: set terminationGracePeriodSeconds (shutdownDelay + shutdownTimeout + 1s, plus the preStop sleep)", name)
	}
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
		c.errorf("%s: no pod securityContext", name)
	}
	if psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		c.errorf("%s: runAsUser 0", name)
	}
	if len(spec.Containers) == 0 {
		c.errorf("%s: no containers", name)
	}
	for i := range spec.Containers {
		ct := &spec.Containers[i]
		cname := fmt.Sprintf("%s container %s", name, ct.Name)
		sc := ct.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
			c.errorf("%s: runAsNonRoot must be true", cname)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			c.errorf("%s: runAsUser 0", cname)
		}
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			c.errorf("%s: readOnlyRootFilesystem must be true", cname)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			c.errorf("%s: allowPrivilegeEscalation must be false", cname)
		}
		if isTrue(sc.Privileged) {
			c.errorf("%s: privileged", cname)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			c.errorf("%s: capabilities must drop ALL", cname)
		} else if len(sc.Capabilities.Add) > 0 {
			c.errorf("%s: adds capabilities %v (the listen ports are above 1024)", cname, sc.Capabilities.Add)
		}
		seccomp := psc.SeccompProfile
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			c.errorf("%s: seccompProfile must be RuntimeDefault", cname)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := ct.Resources.Requests[r]; !ok {
				c.errorf("%s: no %s request", cname, r)
			}
			if _, ok := ct.Resources.Limits[r]; !ok {
				c.errorf("%s: no %s limit", cname, r)
			}
		}
		c.mounts(cname, ct, spec)
	}
	c.probes(d)
}

// mounts: ConfigMaps and Secrets mounted as whole directories. The kubelet
// updates such a volume by swapping a symlink; a subPath mount is a bind mount of
// one file, which never sees the update, so the gateway would never reload it.
func (c *checker) mounts(cname string, ct *corev1.Container, spec *corev1.PodSpec) {
	for _, m := range ct.VolumeMounts {
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			c.errorf("%s: volumeMount %s names no volume", cname, m.Name)
			continue
		}
		v := spec.Volumes[i]
		live := v.ConfigMap != nil || v.Secret != nil || v.Projected != nil
		if live && (m.SubPath != "" || m.SubPathExpr != "") {
			c.errorf("%s: volumeMount %s uses subPath: the kubelet's updates never reach a subPath mount, so the gateway would not reload it", cname, m.Name)
		}
		if !m.ReadOnly && live {
			c.errorf("%s: volumeMount %s: mount configuration read-only", cname, m.Name)
		}
		if cm := v.ConfigMap; cm != nil && !isTrue(cm.Optional) &&
			!slices.ContainsFunc(c.s.ConfigMaps, func(o *corev1.ConfigMap) bool { return o.Name == cm.Name }) {
			c.errorf("%s: volume %s: ConfigMap %q is not among the objects", cname, v.Name, cm.Name)
		}
	}
}

// adminPort returns the container port the readiness probe asks: the admin
// listener's. Checks on the admin port's privacy use it.
func (c *checker) adminPort(d *appsv1.Deployment) *corev1.ContainerPort {
	for i := range d.Spec.Template.Spec.Containers {
		ct := &d.Spec.Template.Spec.Containers[i]
		if p := ct.ReadinessProbe; p != nil && p.HTTPGet != nil {
			if cp := containerPort(ct, p.HTTPGet.Port); cp != nil {
				return cp
			}
		}
	}
	return nil
}

func (c *checker) probes(d *appsv1.Deployment) {
	for i := range d.Spec.Template.Spec.Containers {
		ct := &d.Spec.Template.Spec.Containers[i]
		cname := fmt.Sprintf("Deployment %s container %s", d.Name, ct.Name)
		for _, p := range []struct {
			kind  string
			probe *corev1.Probe
			path  string
		}{
			{"readinessProbe", ct.ReadinessProbe, ReadyPath},
			{"livenessProbe", ct.LivenessProbe, LivePath},
			{"startupProbe", ct.StartupProbe, LivePath},
		} {
			if p.probe == nil {
				if p.kind != "startupProbe" {
					c.errorf("%s: no %s", cname, p.kind)
				}
				continue
			}
			g := p.probe.HTTPGet
			if g == nil {
				c.errorf("%s: %s must be an httpGet of %s on the admin port", cname, p.kind, p.path)
				continue
			}
			if g.Path != p.path {
				c.errorf("%s: %s asks %s, the gateway answers it on %s", cname, p.kind, g.Path, p.path)
			}
			if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
				c.errorf("%s: %s scheme %s: the admin listener is plain HTTP", cname, p.kind, g.Scheme)
			}
			cp := containerPort(ct, g.Port)
			if cp == nil {
				c.errorf("%s: %s port %s is not a container port", cname, p.kind, g.Port.String())
			} else if cp.Name != "admin" {
				c.errorf("%s: %s on port %s, not the admin port", cname, p.kind, g.Port.String())
			}
		}
	}
}

// containerPort resolves a port by name or number among the container's ports.
func containerPort(ct *corev1.Container, p intstr.IntOrString) *corev1.ContainerPort {
	for i := range ct.Ports {
		cp := &ct.Ports[i]
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp
		}
	}
	return nil
}

// podPort resolves a Service's targetPort among every container's ports.
func podPort(spec *corev1.PodSpec, p intstr.IntOrString) *corev1.ContainerPort {
	for i := range spec.Containers {
		if cp := containerPort(&spec.Containers[i], p); cp != nil {
			return cp
		}
	}
	return nil
}

func (c *checker) service(svc *corev1.Service, d *appsv1.Deployment, admin *corev1.ContainerPort) {
	name := "Service " + svc.Name
	pod := &d.Spec.Template
	if len(svc.Spec.Selector) == 0 {
		c.errorf("%s: no selector", name)
	} else if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		c.errorf("%s: selector %v does not select the Deployment's pods (labels %v)", name, svc.Spec.Selector, pod.Labels)
	}
	headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
	for _, sp := range svc.Spec.Ports {
		tp := sp.TargetPort
		if tp.Type == intstr.Int && tp.IntVal == 0 {
			tp = intstr.FromInt32(sp.Port)
		}
		cp := podPort(&pod.Spec, tp)
		if cp == nil {
			c.errorf("%s: port %s targets %s, no container port", name, sp.Name, tp.String())
			continue
		}
		if admin != nil && cp.ContainerPort == admin.ContainerPort && !headless {
			c.errorf("%s: exposes the admin port (plain HTTP, no auth) on a cluster IP; only a headless Service may name it, for Prometheus", name)
		}
	}
}

func (c *checker) hpa(h *autoscalingv2.HorizontalPodAutoscaler, d *appsv1.Deployment) {
	name := "HorizontalPodAutoscaler " + h.Name
	ref := h.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != d.Name {
		c.errorf("%s: scaleTargetRef %s %s/%s is not the Deployment %s", name, ref.APIVersion, ref.Kind, ref.Name, d.Name)
	}
	minR := int32(1)
	if h.Spec.MinReplicas != nil {
		minR = *h.Spec.MinReplicas
	}
	if minR < 2 {
		c.errorf("%s: minReplicas %d: one pod is an outage on every drain", name, minR)
	}
	if h.Spec.MaxReplicas < minR {
		c.errorf("%s: maxReplicas %d below minReplicas %d", name, h.Spec.MaxReplicas, minR)
	}
	for _, m := range h.Spec.Metrics {
		if m.Type != autoscalingv2.ResourceMetricSourceType || m.Resource == nil {
			continue
		}
		if m.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
			for _, ct := range d.Spec.Template.Spec.Containers {
				if _, ok := ct.Resources.Requests[m.Resource.Name]; !ok {
					c.errorf("%s: utilization of %s needs a %s request on container %s", name, m.Resource.Name, m.Resource.Name, ct.Name)
				}
			}
		}
	}
}

// networkPolicy: the policy selects the pods, admits the traffic ports, and
// admits the admin port only from selected peers.
func (c *checker) networkPolicy(np *networkingv1.NetworkPolicy, d *appsv1.Deployment, admin *corev1.ContainerPort) {
	name := "NetworkPolicy " + np.Name
	pod := &d.Spec.Template
	c.selects(name, &np.Spec.PodSelector, pod)
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		c.errorf("%s: policyTypes must include Ingress", name)
		return
	}
	admits := func(cp *corev1.ContainerPort, rule networkingv1.NetworkPolicyIngressRule) bool {
		if len(rule.Ports) == 0 {
			return true
		}
		for _, p := range rule.Ports {
			if p.Port == nil {
				return true
			}
			if p.Port.Type == intstr.String && p.Port.StrVal == cp.Name {
				return true
			}
			if p.Port.Type == intstr.Int {
				end := p.Port.IntVal
				if p.EndPort != nil {
					end = *p.EndPort
				}
				if cp.ContainerPort >= p.Port.IntVal && cp.ContainerPort <= end {
					return true
				}
			}
		}
		return false
	}
	if admin != nil {
		for i, rule := range np.Spec.Ingress {
			if !admits(admin, rule) {
				continue
			}
			if len(rule.From) == 0 {
				c.errorf("%s: ingress[%d] admits the admin port %d from anywhere", name, i, admin.ContainerPort)
			}
			for j, peer := range rule.From {
				if peer.IPBlock != nil || (peer.PodSelector == nil && peer.NamespaceSelector == nil) {
					c.errorf("%s: ingress[%d].from[%d] admits the admin port from addresses, not from Prometheus's pods", name, i, j)
				}
				if peer.NamespaceSelector != nil && isEmpty(peer.NamespaceSelector) {
					c.errorf("%s: ingress[%d].from[%d] admits the admin port from every namespace", name, i, j)
				}
			}
		}
	}
	// Every port a Service carries traffic to must be admitted.
	for _, svc := range c.s.Services {
		for _, sp := range svc.Spec.Ports {
			tp := sp.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(sp.Port)
			}
			cp := podPort(&pod.Spec, tp)
			if cp == nil || (admin != nil && cp.ContainerPort == admin.ContainerPort) {
				continue
			}
			if !slices.ContainsFunc(np.Spec.Ingress, func(r networkingv1.NetworkPolicyIngressRule) bool { return admits(cp, r) }) {
				c.errorf("%s: admits no traffic to port %s (%d) that Service %s carries", name, cp.Name, cp.ContainerPort, svc.Name)
			}
		}
	}
}

func (c *checker) serviceMonitor(sm *monitoringv1.ServiceMonitor, d *appsv1.Deployment, admin *corev1.ContainerPort) {
	name := "ServiceMonitor " + sm.Name
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		c.errorf("%s: selector: %v", name, err)
		return
	}
	if sel.Empty() {
		c.errorf("%s: empty selector selects every Service", name)
		return
	}
	nsOK := func(ns string) bool {
		n := sm.Spec.NamespaceSelector
		return n.Any || slices.Contains(n.MatchNames, ns) || (len(n.MatchNames) == 0 && ns == sm.Namespace)
	}
	var svcs []*corev1.Service
	for _, svc := range c.s.Services {
		if nsOK(svc.Namespace) && sel.Matches(labels.Set(svc.Labels)) {
			svcs = append(svcs, svc)
		}
	}
	if len(svcs) != 1 {
		c.errorf("%s: selects %d Services, want exactly the admin one", name, len(svcs))
		return
	}
	svc := svcs[0]
	if len(sm.Spec.Endpoints) == 0 {
		c.errorf("%s: no endpoints", name)
	}
	for i, ep := range sm.Spec.Endpoints {
		if ep.Path != MetricsPath {
			c.errorf("%s: endpoints[%d].path %q, the gateway serves %s", name, i, ep.Path, MetricsPath)
		}
		if s := ep.Scheme.String(); s != "" && s != "http" {
			c.errorf("%s: endpoints[%d].scheme %s: the admin listener is plain HTTP", name, i, s)
		}
		j := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port })
		if j < 0 {
			c.errorf("%s: endpoints[%d].port %q is no port of Service %s", name, i, ep.Port, svc.Name)
			continue
		}
		cp := podPort(&d.Spec.Template.Spec, svc.Spec.Ports[j].TargetPort)
		if cp == nil || admin == nil || cp.ContainerPort != admin.ContainerPort {
			c.errorf("%s: endpoints[%d] scrapes Service %s port %q, which is not the admin port", name, i, svc.Name, ep.Port)
		}
	}
}

// selects: sel is a valid, non-empty selector that matches the pod template.
func (c *checker) selects(name string, sel *metav1.LabelSelector, pod *corev1.PodTemplateSpec) {
	if sel == nil || isEmpty(sel) {
		c.errorf("%s: empty selector", name)
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		c.errorf("%s: selector: %v", name, err)
		return
	}
	if !s.Matches(labels.Set(pod.Labels)) {
		c.errorf("%s: selector %s does not select the Deployment's pods (labels %v)", name, s, pod.Labels)
	}
}

func isEmpty(sel *metav1.LabelSelector) bool {
	return len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0
}

func isTrue(b *bool) bool { return b != nil && *b }
