// Package admission is the validating admission webhook: the HTTP adapter
// that puts internal/posture in the API server's write path.
//
// kube-apiserver POSTs an admission.k8s.io/v1 AdmissionReview for every
// create and update the ValidatingWebhookConfiguration routes to it; the
// Webhook decodes the object, runs posture.Evaluate on it (the same
// evaluator the in-cluster scanner and `vigil scan` use, so the three always
// agree) and answers:
//
//   - an unhealthy recommendation in deny mode rejects the request (403)
//     with a message that names every violated deny-mode recommendation,
//     each violation and the fix, as kubectl prints it;
//   - an unhealthy recommendation in audit mode admits it with one warning
//     per violation, which kubectl prints as "Warning: ...";
//   - anything else (deletes, connects, subresources, other kinds,
//     namespaces the configuration excludes) is admitted untouched.
//
// Findings of admitted objects go to Config.OnFindings, except for dry-run
// requests, which are answered the same way but have no side effects.
//
// The webhook is built to be registered with failurePolicy Ignore and a
// short timeout: the cluster keeps working when it is down, and the
// workload-level checks plus the checks on controller-made pods (see
// Webhook) limit what slips through while it is.
package admission
