#pragma once
// The whole public C++ API of fastlstm.
#include "fastlstm/config.hpp"
#include "fastlstm/device.hpp"
#include "fastlstm/error.hpp"
#include "fastlstm/lstm.hpp"
#include "fastlstm/model_file.hpp"
#include "fastlstm/step_batcher.hpp"
#include "fastlstm/stream_pool.hpp"
#include "fastlstm/tensor.hpp"
#include "fastlstm/version.hpp"
#include "fastlstm/weights.hpp"
