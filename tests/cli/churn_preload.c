// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Test only, LD_PRELOADed into the CLI: a datapath that churns nat_state
 * while the CLI walks it, deterministically. Each time a walk hands the CLI
 * a key (bpf_map_get_next_key, or the first key of a bpf_map_lookup_batch
 * answer), that entry is evicted and the one evicted before comes back as a
 * new flow. A get_next_key walk then restarts from the first key at every
 * step and never ends; a bucket-wise batch walk is not affected.
 */
#include <bpf/bpf.h>
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

static char held_key[64], held_value[64];
static int held;

static int nat_state_sizes(int fd, __u32 *key_size, __u32 *value_size)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len) || strcmp(info.name, "nat_state") ||
	    info.key_size > sizeof(held_key) || info.value_size > sizeof(held_value))
		return -1;
	*key_size = info.key_size;
	*value_size = info.value_size;
	return 0;
}

static void churn(int fd, const void *key)
{
	char value[sizeof(held_value)];
	__u32 key_size, value_size;
	int saved = errno;

	if (nat_state_sizes(fd, &key_size, &value_size) == 0 && bpf_map_lookup_elem(fd, key, value) == 0 &&
	    bpf_map_delete_elem(fd, key) == 0) {
		if (held)
			bpf_map_update_elem(fd, held_key, held_value, BPF_ANY);
		memcpy(held_key, key, key_size);
		memcpy(held_value, value, value_size);
		held = 1;
	}
	errno = saved;
}

int bpf_map_get_next_key(int fd, const void *key, void *next_key)
{
	int (*real)(int, const void *, void *) = dlsym(RTLD_NEXT, "bpf_map_get_next_key");
	int err = real(fd, key, next_key);

	if (!err)
		churn(fd, next_key);
	return err;
}

int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, __u32 *count,
			 const struct bpf_map_batch_opts *opts)
{
	int (*real)(int, void *, void *, void *, void *, __u32 *, const struct bpf_map_batch_opts *) =
		dlsym(RTLD_NEXT, "bpf_map_lookup_batch");
	int err = real(fd, in_batch, out_batch, keys, values, count, opts);

	if ((!err || errno == ENOENT) && *count)
		churn(fd, keys);
	return err;
}
