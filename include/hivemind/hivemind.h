// Umbrella header: everything public in hivemind.
#ifndef HIVEMIND_HIVEMIND_H_
#define HIVEMIND_HIVEMIND_H_

#include "hivemind/averaging/allreduce.h"
#include "hivemind/averaging/averager.h"
#include "hivemind/averaging/group.h"
#include "hivemind/averaging/load_balancing.h"
#include "hivemind/averaging/matchmaking.h"
#include "hivemind/averaging/moshpit.h"
#include "hivemind/averaging/state_sharing.h"
#include "hivemind/codec/codec.h"
#include "hivemind/codec/error_feedback.h"
#include "hivemind/codec/factory.h"
#include "hivemind/codec/selector.h"
#include "hivemind/dht/dht.h"
#include "hivemind/dht/opendht_node.h"
#include "hivemind/net/endpoint.h"
#include "hivemind/net/identity.h"
#include "hivemind/optim/progress_tracker.h"
#include "hivemind/wire/buffer.h"
#include "hivemind/wire/error_body.h"
#include "hivemind/wire/frame.h"
// The libtorch layer is not included here (it needs libtorch's headers):
// #include "hivemind/optim/optimizer.h" and link hivemind::hivemind_torch.

#endif  // HIVEMIND_HIVEMIND_H_
