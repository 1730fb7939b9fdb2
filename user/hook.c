// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Which hook a bridge uses is decided at attach and recorded in its
 * bridges entry, so detach and status follow what was really done. One
 * guard per bridge: attaching in one hook removes any program of ours in
 * the other (left by a lost pin set, with maps nobody edits any more). */
#include <errno.h>
#include <string.h>

#include "cli.h"

int dh_hook_attach(const struct dh_state *st, int ifindex, enum dh_hook hook, struct dh_bridge *bridge)
{
	bool created_clsact = false;
	int err;

	bridge->flags &= ~(DH_BRIDGE_TCX | DH_BRIDGE_CREATED_CLSACT);
	if (hook != DH_HOOK_CLSACT) {
		err = dh_tcx_attach(st, ifindex);
		if (!err) {
			err = dh_clsact_detach(ifindex, false);
			if (err)  /* all or nothing: the caller undoes nothing it did not record */
				dh_tcx_detach(ifindex);
			else
				bridge->flags |= DH_BRIDGE_TCX;
			return err;
		}
		if (hook == DH_HOOK_TCX || err != -EOPNOTSUPP)
			return err;
		dh_debug("no tcx on this kernel: attaching with clsact");
	}
	err = dh_clsact_attach(ifindex, st->prog_ingress_fd, st->prog_egress_fd, &created_clsact);
	if (err)
		return err;
	err = dh_tcx_detach(ifindex);
	if (err == -EINVAL)
		err = 0;  /* no tcx on this kernel: nothing there */
	if (err)
		dh_clsact_detach(ifindex, created_clsact);
	else if (created_clsact)
		bridge->flags |= DH_BRIDGE_CREATED_CLSACT;
	return err;
}

int dh_hook_detach(const struct dh_state *st, int ifindex, const struct dh_bridge *bridge)
{
	if (bridge->flags & DH_BRIDGE_TCX)
		return dh_tcx_detach(ifindex);
	return dh_clsact_detach(ifindex, bridge->flags & DH_BRIDGE_CREATED_CLSACT);
}

bool dh_hook_attached(const struct dh_state *st, int ifindex, const struct dh_bridge *bridge)
{
	if (bridge->flags & DH_BRIDGE_TCX)
		return dh_tcx_attached(st, ifindex);
	return dh_clsact_presence(ifindex) == DH_TC_OURS;
}

const char *dh_hook_name(const struct dh_bridge *bridge)
{
	return bridge->flags & DH_BRIDGE_TCX ? "tcx" : "clsact";
}

bool dh_hook_unrecorded_present(int ifindex)
{
	return dh_tcx_count_ours(ifindex) > 0 || dh_clsact_any_ours(ifindex);
}

int dh_hook_remove_unrecorded(int ifindex)
{
	int err = dh_tcx_detach(ifindex), clsact_err = dh_clsact_detach(ifindex, false);

	if (err == -EINVAL)
		err = 0;  /* no tcx on this kernel */
	return err ? err : clsact_err;
}
