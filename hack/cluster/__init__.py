"""The local cluster every tool and test shares: `make run`/`demo`/`bench`, the e2e fixtures, `make kind-test`.

Modules, lowest first: `processes` (binary cache, child processes, bounded waits), `pki` (certificates),
`kwok` and `nodepools` (the fake kubelets and the nodes they run), `controlplane` (etcd, kube-apiserver,
kube-scheduler, kube-controller-manager, kwok), `chart` (the chart's webhook configuration, pointed at
127.0.0.1), `webhook` (the webhook as a process), `clusters` (what tests need of a cluster, local or existing),
`placement` (where pods landed); for the chart installed for real: `node` (a real node: kubelet, containerd,
runc, the CNI bridge), `live` (`helm install --wait` on the local cluster, the chart's pods on that node; its
images come from `hack.images`). Tests import this package; nothing here
imports tests.
"""
