#!/usr/bin/env bash
# A local cluster of three wdo hosts, for trying it (`make cluster`):
#   - etcd (Debian's etcd-server) on 127.0.0.1:23790, its data in .wdo-cluster/etcd;
#   - an S3-protocol store (s3s-fs) on 127.0.0.1:23900, its bucket in .wdo-cluster/s3/wdo;
#   - hosts on 127.0.0.1:8787, 8788 and 8789 serving examples/wdo.toml, data in
#     .wdo-cluster/host{0,1,2}, admin token in .wdo-cluster/admin-token.
# Ctrl-C stops everything; the data stays for the next run (delete .wdo-cluster to start over).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=.wdo-cluster
wdo=./target/release/wdo
s3s_fs=${WDO_S3_SERVER:-.tools/cargo/bin/s3s-fs}
mkdir -p "$root/s3/wdo"
[ -f "$root/admin-token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$root/admin-token"
token=$(cat "$root/admin-token")

trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT INT TERM

etcd --name wdo-local --data-dir "$root/etcd" \
    --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster wdo-local=http://127.0.0.1:23800 > "$root/etcd.log" 2>&1 &
"$s3s_fs" --host 127.0.0.1 --port 23900 --access-key wdo-local --secret-key wdo-local-secret-0123456789 \
    "$root/s3" > "$root/s3.log" 2>&1 &

export AWS_ENDPOINT_URL=http://127.0.0.1:23900 AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=wdo-local AWS_SECRET_ACCESS_KEY=wdo-local-secret-0123456789
for _ in $(seq 50); do
    etcdctl --endpoints 127.0.0.1:23790 endpoint health > /dev/null 2>&1 && break
    sleep 0.2
done
for i in 0 1 2; do
    "$wdo" serve --listen "127.0.0.1:$((8787 + i))" --data "$root/host$i" \
        --cluster etcd://127.0.0.1:23790 --backup s3://wdo/cluster \
        --admin-token "$token" --cache-dir target/wdo-cache examples/wdo.toml 2> "$root/host$i.log" &
done
sleep 3
echo
echo "three hosts: http://127.0.0.1:8787, :8788, :8789 (logs in $root/host*.log)"
echo "  curl -X POST http://127.0.0.1:8788/counter/hello/increment"
echo "  $wdo cluster status --server http://127.0.0.1:8787 --token $token"
echo "  $wdo cluster drain HOST --server http://127.0.0.1:8787 --token $token"
echo "Ctrl-C stops the cluster."
wait
