// The MLX capability probe and the dtype-policy choice made from it (see README.md). Nothing here
// loads the native binding in the calling process.
export { CAPABILITIES_SCHEMA, HALF_DTYPES, describeCapabilities, isCapabilities, type HalfDtype, type MlxCapabilities } from './capabilities.ts';
export { choosePolicy, computeDtypeFor, isDtypePolicySetting, FLOAT32_CHOICE, DTYPE_POLICY_SETTINGS, type DtypePolicySetting, type PolicyChoice } from './policy-choice.ts';
export { getCapabilities, readCachedCapabilities, runCapabilityProbe, capabilitiesDir, mlxBinaryKey, mlxBinaryPaths, CAPABILITIES_FILE } from './probe.ts';
