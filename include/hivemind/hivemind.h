// Umbrella header: everything public in hivemind.
#ifndef HIVEMIND_HIVEMIND_H_
#define HIVEMIND_HIVEMIND_H_

#include "hivemind/codec/codec.h"
#include "hivemind/codec/error_feedback.h"
#include "hivemind/codec/factory.h"
#include "hivemind/codec/selector.h"
#include "hivemind/wire/buffer.h"
#include "hivemind/wire/error_body.h"
#include "hivemind/wire/frame.h"

#endif  // HIVEMIND_HIVEMIND_H_
