declare module 'wdo:object/warm-up@0.1.0' {
  export function warmUp(): void;
}
