package testcard

import "fmt"

// NAL unit types and the nal_ref_idc used for everything: every picture
// is a reference picture, which pic_order_cnt_type 2 requires anyway.
const (
	naluSlice = 1
	naluIDR   = 5
	naluSPS   = 7
	naluPPS   = 8
	refIdc    = 3

	log2MaxFrameNum = 4 // frame_num is 4 bits and wraps every 16 frames
)

// levelLimit is one row of Table A-1 of the H.264 specification.
type levelLimit struct {
	idc     uint8
	maxMBPS int // macroblocks per second
	maxFS   int // frame size in macroblocks
}

var levelLimits = []levelLimit{
	{31, 108000, 3600},
	{32, 216000, 5120},
	{40, 245760, 8192},
	{42, 522240, 8704},
	{50, 589824, 22080},
	{51, 983040, 36864},
	{52, 2073600, 36864},
}

// chooseLevel picks the lowest level that fits, but never below 3.1: that
// is what browsers offer by default (profile-level-id 42e01f), and a
// smaller picture is always within its limits.
func chooseLevel(mbW, mbH, fps int) (uint8, error) {
	fs := mbW * mbH
	for _, l := range levelLimits {
		maxDim := 1
		for maxDim*maxDim <= 8*l.maxFS {
			maxDim++
		}
		maxDim-- // floor(sqrt(8*MaxFS)), A.3.1 f and g
		if fs <= l.maxFS && fs*fps <= l.maxMBPS && mbW <= maxDim && mbH <= maxDim {
			return l.idc, nil
		}
	}
	return 0, fmt.Errorf("testcard: %dx%d at %d fps exceeds every H.264 level", mbW*16, mbH*16, fps)
}

// spsRBSP builds a Constrained Baseline sequence parameter set.
func spsRBSP(mbW, mbH, fps int, level uint8) []byte {
	var w bitWriter
	w.u(8, 66) // profile_idc: Baseline
	// constraint_set0 (Baseline) and constraint_set1 (Main) together mean
	// Constrained Baseline: profile-level-id 42c0xx, as x264 writes it.
	w.u(8, 0xc0)
	w.u(8, uint32(level))
	w.ue(0)                   // seq_parameter_set_id
	w.ue(log2MaxFrameNum - 4) // log2_max_frame_num_minus4
	w.ue(2)                   // pic_order_cnt_type 2: output order = decode order
	w.ue(1)                   // max_num_ref_frames
	w.flag(false)             // gaps_in_frame_num_value_allowed_flag
	w.ue(uint32(mbW - 1))     // pic_width_in_mbs_minus1
	w.ue(uint32(mbH - 1))     // pic_height_in_map_units_minus1
	w.flag(true)              // frame_mbs_only_flag
	w.flag(true)              // direct_8x8_inference_flag
	w.flag(false)             // frame_cropping_flag
	w.flag(true)              // vui_parameters_present_flag
	w.flag(false)             // aspect_ratio_info_present_flag
	w.flag(false)             // overscan_info_present_flag
	w.flag(true)              // video_signal_type_present_flag
	w.u(3, 5)                 // video_format: unspecified
	w.flag(false)             // video_full_range_flag: limited range
	w.flag(true)              // colour_description_present_flag
	w.u(8, 6)                 // colour_primaries: SMPTE 170M
	w.u(8, 6)                 // transfer_characteristics: SMPTE 170M
	w.u(8, 6)                 // matrix_coefficients: BT.601
	w.flag(false)             // chroma_loc_info_present_flag
	w.flag(true)              // timing_info_present_flag
	w.u(32, 1)                // num_units_in_tick
	w.u(32, uint32(2*fps))    // time_scale: two ticks per frame
	w.flag(true)              // fixed_frame_rate_flag
	w.flag(false)             // nal_hrd_parameters_present_flag
	w.flag(false)             // vcl_hrd_parameters_present_flag
	w.flag(false)             // pic_struct_present_flag
	w.flag(true)              // bitstream_restriction_flag
	w.flag(true)              // motion_vectors_over_pic_boundaries_flag
	w.ue(0)                   // max_bytes_per_pic_denom
	w.ue(0)                   // max_bits_per_mb_denom
	w.ue(16)                  // log2_max_mv_length_horizontal
	w.ue(16)                  // log2_max_mv_length_vertical
	// No reordering and a one-frame buffer let decoders show each frame
	// as soon as it arrives instead of waiting to fill a DPB.
	w.ue(0) // max_num_reorder_frames
	w.ue(1) // max_dec_frame_buffering
	w.trailing()
	return w.buf
}

// ppsRBSP builds the picture parameter set: CAVLC, one slice group, and
// deblocking under slice control so slices can switch it off; every
// macroblock is coded losslessly, so filtering would only blur it.
func ppsRBSP() []byte {
	var w bitWriter
	w.ue(0)       // pic_parameter_set_id
	w.ue(0)       // seq_parameter_set_id
	w.flag(false) // entropy_coding_mode_flag: CAVLC
	w.flag(false) // bottom_field_pic_order_in_frame_present_flag
	w.ue(0)       // num_slice_groups_minus1
	w.ue(0)       // num_ref_idx_l0_default_active_minus1
	w.ue(0)       // num_ref_idx_l1_default_active_minus1
	w.flag(false) // weighted_pred_flag
	w.u(2, 0)     // weighted_bipred_idc
	w.se(0)       // pic_init_qp_minus26
	w.se(0)       // pic_init_qs_minus26
	w.se(0)       // chroma_qp_index_offset
	w.flag(true)  // deblocking_filter_control_present_flag
	w.flag(false) // constrained_intra_pred_flag
	w.flag(false) // redundant_pic_cnt_present_flag
	w.trailing()
	return w.buf
}
