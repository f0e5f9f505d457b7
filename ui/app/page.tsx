import VesselApp from "@/components/VesselApp";

export default function Home() {
  return <VesselApp />;
}
